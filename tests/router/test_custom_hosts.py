"""Custom domains in the routing table, without sockets: a route's extra hostnames lead to
its app as its own ``APP.<domain>`` does, follow every change (a domain added, removed, moved
to another app, its app renamed or gone), and reach the router processes in snapshots."""

from __future__ import annotations

import json

import pytest

from dynos.router.route import DynoEndpoint, Route, host_name, routes_from_json, routes_to_json
from dynos.router.routing_table import RoutingTable

WEB1 = DynoEndpoint("web.1", "127.0.0.1", 5001)
WEB2 = DynoEndpoint("web.2", "127.0.0.1", 5002)


def app_at(table: RoutingTable, host: str) -> str | None:
    route = table.lookup(host)
    return None if route is None else route.app


def test_a_host_header_gives_its_name_as_hostnames_are_kept() -> None:
    assert host_name("WWW.Example.com.:5000") == "www.example.com"
    assert host_name("www.example.com") == "www.example.com"
    assert host_name("") == ""


def test_a_custom_domain_routes_to_its_app_in_any_spelling_of_its_host_header() -> None:
    table = RoutingTable("localhost")
    table.set_app("shop", [WEB1], hosts=["www.example.com", "example.com"])
    table.set_app("blog", [WEB2])
    for host in ("www.example.com", "WWW.EXAMPLE.COM", "www.example.com:80", "example.com."):
        assert app_at(table, host) == "shop", host
    assert table.lookup("www.example.com") is table.lookup("shop.localhost")
    assert app_at(table, "blog.localhost") == "blog"
    # Only the names given: no parent, child or look-alike of a custom domain.
    for host in ("api.example.com", "www.example.com.evil", "example.org", "x.www.example.com"):
        assert table.lookup(host) is None, host


def test_a_removed_domain_stops_routing_even_after_it_was_looked_up() -> None:
    table = RoutingTable("localhost")
    table.set_app("shop", [WEB1], hosts=["www.example.com"])
    assert app_at(table, "www.example.com") == "shop"  # remembered in the host cache
    table.set_app("shop", [WEB1], hosts=[])
    assert table.lookup("www.example.com") is None
    assert app_at(table, "shop.localhost") == "shop"


def test_a_domain_moved_between_apps_in_one_publish_follows_in_either_order() -> None:
    for order in (("alpha", "beta"), ("beta", "alpha")):
        table = RoutingTable("localhost")
        table.set_app("alpha", [WEB1], hosts=["www.example.com"])
        table.set_app("beta", [WEB2])
        assert app_at(table, "www.example.com") == "alpha"
        wanted = {"alpha": [], "beta": ["www.example.com"]}
        for app in order:  # the publisher sets every app, then retains
            table.set_app(app, [WEB1 if app == "alpha" else WEB2], hosts=wanted[app])
        assert app_at(table, "www.example.com") == "beta", order


def test_a_renamed_or_destroyed_app_takes_its_domains_along() -> None:
    table = RoutingTable("localhost")
    table.set_app("shop", [WEB1], hosts=["www.example.com"])
    assert app_at(table, "www.example.com") == "shop"
    table.set_app("store", [WEB1], hosts=["www.example.com"])  # renamed: a new name...
    table.retain({"store"})  # ...and the old one goes
    assert app_at(table, "www.example.com") == "store"
    assert table.lookup("shop.localhost") is None
    table.retain(set())
    assert table.lookup("www.example.com") is None
    table.set_app("other", [WEB2], hosts=["api.example.com"])
    table.remove_app("other")
    assert table.lookup("api.example.com") is None


def test_setting_the_same_domains_again_keeps_the_hosts_remembered() -> None:
    """A publish that changes no domain must not cost the router its host cache: every dyno
    state change publishes every app."""
    table = RoutingTable("localhost")
    table.set_app("shop", [WEB1], hosts=["www.example.com"])
    table.set_app("blog", [WEB2])
    table.lookup("www.example.com")
    table.lookup("shop.localhost")
    remembered = dict(table._hosts)
    table.set_app("shop", [WEB1, WEB2], hosts=["www.example.com"])
    table.set_app("blog", [WEB2], idle=True)
    assert table._hosts == remembered and len(remembered) == 2


def test_custom_domains_travel_to_the_router_processes() -> None:
    routes = [Route("shop", (WEB1,), hosts=("www.example.com",)), Route("blog", (WEB2,))]
    assert routes_from_json(json.loads(json.dumps(routes_to_json(routes)))) == routes
    source = RoutingTable("localhost")
    source.set_app("shop", [WEB1], hosts=["www.example.com"])
    copy = RoutingTable("localhost")
    copy.apply_snapshot(json.loads(json.dumps(source.snapshot())))
    assert app_at(copy, "www.example.com") == "shop"
    source.set_app("shop", [WEB1], hosts=[])
    copy.apply_snapshot(json.loads(json.dumps(source.snapshot())))
    assert copy.lookup("www.example.com") is None


def test_an_apps_own_name_wins_over_a_custom_domain_spelled_the_same() -> None:
    """Unreachable through the API (names under the platform's domain are refused), but a
    server may start with another domain than the one a domain was added under."""
    table = RoutingTable("example.org")
    table.set_app("blog", [WEB1], hosts=["shop.example.org"])
    assert app_at(table, "shop.example.org") == "blog"  # no app "shop" yet: remembered
    table.set_app("shop", [WEB2])
    assert app_at(table, "shop.example.org") == "shop"


@pytest.mark.anyio
async def test_waiting_for_the_followers_returns_once_they_answered() -> None:
    class Followers:
        def __init__(self) -> None:
            self.drains: list[tuple[str, str, float]] = []

        def routes_changed(self) -> None:
            pass

        async def drain(self, app: str, dyno: str, timeout: float) -> None:
            self.drains.append((app, dyno, timeout))

    followers = Followers()
    table = RoutingTable("localhost", followers=followers)
    table.set_app("shop", [WEB1], hosts=["www.example.com"])
    await table.wait_followers(2.0)
    assert followers.drains == [("", "", 2.0)]  # a drain of no dyno: answered once applied
    await RoutingTable("localhost").wait_followers(2.0)  # no followers: at once
