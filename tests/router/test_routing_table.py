"""The routing table without sockets: route values, dyno slots, the table that joins them,
and its hooks (``on_wake``, ``followers``), all given to it when it is made.

The same behaviour through a real router and real connections is in
test_router_draining.py; here a request is ``slot.enter()`` and ``slot.leave()``."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from dynos.core.app_settings import DEFAULT_REQUEST_TIMEOUT
from dynos.router.dyno_slot import DynoSlot
from dynos.router.route import DynoEndpoint, Route, app_for_host, routes_from_json, routes_to_json
from dynos.router.routing_table import WAKE_RETRY, AppRoute, RoutingTable
from dynos.testing.fakes import FakeClock

WEB1 = DynoEndpoint("web.1", "127.0.0.1", 5001)
WEB2 = DynoEndpoint("web.2", "127.0.0.1", 5002)


class Connection:
    """An idle keep-alive connection, as a slot holds it."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Followers:
    """Router processes beside the table's, as the table sees them."""

    def __init__(self) -> None:
        self.changes = 0
        self.drains: list[tuple[str, str, float]] = []
        self.release = asyncio.Event()

    def routes_changed(self) -> None:
        self.changes += 1

    async def drain(self, app: str, dyno: str, timeout: float) -> None:
        self.drains.append((app, dyno, timeout))
        await self.release.wait()


def route_of(table: RoutingTable, app: str = "foo") -> AppRoute:
    route = table.lookup(f"{app}.localhost")
    assert route is not None
    return route


# ---- route values (pure) ----------------------------------------------------------------------


def test_the_app_is_the_host_name_under_the_domain() -> None:
    assert app_for_host("foo.localhost", ".localhost") == "foo"
    assert app_for_host("Foo.LocalHost:5000", ".localhost") == "foo"
    assert app_for_host("localhost", ".localhost") is None
    assert app_for_host("foo.example.com", ".localhost") is None


def test_routes_travel_as_json_and_come_back_equal() -> None:
    routes = [
        Route("foo", (WEB1, WEB2), request_timeout=5.0),
        Route("bar", (), crashed=True),
        Route("baz", (), idle=True),
    ]
    sent = json.loads(json.dumps(routes_to_json(routes)))
    assert routes_from_json(sent) == routes


def test_a_route_times_out_requests_after_the_app_settings_default() -> None:
    assert Route("foo").request_timeout == DEFAULT_REQUEST_TIMEOUT == 30.0


# ---- the table: routes and their slots ---------------------------------------------------


def test_each_endpoint_gets_a_slot_in_the_routes_order() -> None:
    table = RoutingTable("LocalHost")
    table.set_app("foo", [WEB2, WEB1], request_timeout=5.0)
    route = route_of(table)
    assert [slot.endpoint for slot in route.slots] == [WEB2, WEB1]
    assert route.endpoints == (WEB2, WEB1)
    assert (route.request_timeout, route.crashed, route.idle) == (5.0, False, False)
    assert table.lookup("bar.localhost") is None
    assert table.lookup("foo.elsewhere") is None


def test_a_dyno_left_out_is_retired_and_forgotten_once_its_requests_end() -> None:
    table = RoutingTable("localhost")
    table.set_app("foo", [WEB1, WEB2])
    leaving, staying = route_of(table).slots
    leaving.enter()
    idle = Connection()
    leaving.idle.append(idle)
    table.set_app("foo", [WEB2])
    assert route_of(table).slots == (staying,)
    assert not leaving.routable and idle.closed and leaving.idle == []
    assert table.in_flight("foo", "web.1") == 1  # still counted: the manager drains it
    leaving.leave()
    assert table.in_flight("foo", "web.1") == 0
    table.set_app("foo", [WEB1, WEB2])  # back, as after a restart: a new slot
    assert route_of(table).slots[0] is not leaving


def test_a_busy_dyno_put_back_keeps_its_slot_and_count() -> None:
    table = RoutingTable("localhost")
    table.set_app("foo", [WEB1])
    (slot,) = route_of(table).slots
    slot.enter()
    table.set_app("foo", [])
    table.set_app("foo", [WEB1])
    assert route_of(table).slots == (slot,)
    assert slot.routable and table.in_flight("foo", "web.1") == 1


def test_a_dyno_at_a_new_address_loses_its_idle_connections_and_quarantine() -> None:
    table = RoutingTable("localhost")
    table.set_app("foo", [WEB1])
    (slot,) = route_of(table).slots
    idle = Connection()
    slot.idle.append(idle)
    slot.quarantined_until = 99.0
    moved = DynoEndpoint("web.1", "127.0.0.1", 6001)
    table.set_app("foo", [moved])
    assert route_of(table).slots == (slot,)
    assert slot.endpoint == moved and idle.closed and slot.quarantined_until == 0.0


def test_retain_forgets_the_apps_that_are_gone() -> None:
    table = RoutingTable("localhost")
    table.set_app("foo", [WEB1])
    table.set_app("bar", [WEB2])
    assert table.lookup("bar.localhost") is not None  # now in the host cache too
    table.retain({"foo"})
    assert table.lookup("bar.localhost") is None
    assert table.lookup("foo.localhost") is not None


def test_last_request_time_starts_at_the_routes_creation_and_only_moves_on() -> None:
    clock = FakeClock(100.0)
    table = RoutingTable("localhost", clock=clock)
    table.set_app("foo", [WEB1])
    assert table.last_request_at("foo") == 100.0
    table.note_request("foo", 150.0)
    table.note_request("foo", 120.0)  # another process's older news
    assert table.last_request_at("foo") == 150.0
    assert table.last_request_at("nope") == 0.0


# ---- hooks given to the table -------------------------------------------------------------


def test_a_request_for_an_idle_app_asks_on_wake_once_per_wake() -> None:
    clock = FakeClock(100.0)
    woken: list[str] = []
    table = RoutingTable("localhost", on_wake=woken.append, clock=clock)
    table.set_app("foo", [], idle=True)
    route = route_of(table)
    table.request_wake(route, clock())
    table.request_wake(route, clock() + 1)
    assert woken == ["foo"]
    table.request_wake(route, clock() + WAKE_RETRY)  # still asleep: asked again
    assert woken == ["foo", "foo"]
    table.set_app("foo", [WEB1])  # it woke
    assert route.waking_since is None
    table.set_app("foo", [], idle=True)
    table.request_wake(route, clock() + WAKE_RETRY + 1)
    assert woken == ["foo", "foo", "foo"]


def test_another_process_wakes_only_a_sleeping_app_without_dynos() -> None:
    woken: list[str] = []
    table = RoutingTable("localhost", on_wake=woken.append)
    table.set_app("foo", [WEB1], idle=False)
    table.set_app("bar", [], crashed=True)
    table.set_app("baz", [], idle=True)
    for app in ("foo", "bar", "baz", "unknown"):
        table.wake(app)
    assert woken == ["baz"]


@pytest.mark.planted_bug
def test_a_failing_on_wake_is_logged_and_the_table_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(app: str) -> None:
        raise RuntimeError("the manager is gone")

    table = RoutingTable("localhost", on_wake=broken)
    table.set_app("foo", [], idle=True)
    with caplog.at_level(logging.ERROR):
        table.request_wake(route_of(table), 1.0)
    assert "on_wake('foo') failed" in caplog.text
    assert route_of(table).waking_since == 1.0  # the waiting requests get H20 in time


def test_followers_hear_of_every_change_of_the_routes() -> None:
    followers = Followers()
    table = RoutingTable("localhost", followers=followers)
    table.set_app("foo", [WEB1])
    table.set_app("bar", [WEB2])
    table.retain({"foo", "bar"})  # nothing gone: nothing changed
    assert followers.changes == 2
    table.retain({"foo"})
    table.remove_app("foo")
    table.remove_app("foo")  # not there any more
    assert followers.changes == 4


def test_a_snapshot_makes_another_table_route_the_same() -> None:
    source = RoutingTable("localhost")
    source.set_app("foo", [WEB1, WEB2], request_timeout=7.0)
    source.set_app("bar", [], crashed=True)
    copy = RoutingTable("localhost")
    copy.set_app("gone", [WEB1])
    copy.apply_snapshot(json.loads(json.dumps(source.snapshot())))
    assert copy.lookup("gone.localhost") is None
    assert route_of(copy).route == route_of(source).route
    assert route_of(copy, "bar").route == Route("bar", (), crashed=True)
    assert copy.snapshot() == source.snapshot()


# ---- waiting (an event loop, no socket) ---------------------------------------------------


@pytest.mark.anyio
async def test_draining_waits_for_the_requests_here_and_in_the_followers() -> None:
    followers = Followers()
    table = RoutingTable("localhost", followers=followers)
    table.set_app("foo", [WEB1])
    (slot,) = route_of(table).slots
    slot.enter()
    table.set_app("foo", [])
    drained = asyncio.create_task(table.wait_drained("foo", "web.1", 5))
    await asyncio.sleep(0.01)
    assert followers.drains == [("foo", "web.1", 5)]
    slot.leave()
    await asyncio.sleep(0.01)
    assert not drained.done()  # a follower still has one in flight
    followers.release.set()
    async with asyncio.timeout(1):
        await drained
    assert table.in_flight("foo", "web.1") == 0


@pytest.mark.anyio
async def test_a_slot_drain_gives_up_after_its_timeout() -> None:
    forgotten: list[DynoSlot] = []
    slot = DynoSlot("foo", WEB1, forgotten.append)
    slot.enter()
    async with asyncio.timeout(1):
        await slot.drained(0.01)
    assert slot.in_flight == 1
    slot.retire()
    assert forgotten == []  # busy: kept until its request ends
    slot.leave()
    assert forgotten == [slot]


@pytest.mark.anyio
async def test_waiting_for_dynos_ends_when_the_app_gets_one_or_goes() -> None:
    table = RoutingTable("localhost")
    table.set_app("foo", [], idle=True)
    assert not await table.wait_for_backends("foo", 0.01)
    waiting = asyncio.create_task(table.wait_for_backends("foo", 5))
    await asyncio.sleep(0)
    table.set_app("foo", [WEB1])
    assert await waiting
    table.set_app("bar", [], idle=True)
    waiting = asyncio.create_task(table.wait_for_backends("bar", 5))
    await asyncio.sleep(0)
    table.remove_app("bar")
    assert not await waiting


def test_a_platform_route_is_routed_and_kept_whatever_the_manager_publishes() -> None:
    followers = Followers()
    table = RoutingTable("localhost", followers=followers)
    service = DynoEndpoint("git", "127.0.0.1", 6001)
    table.set_platform_route("git", service, request_timeout=120.0)
    assert followers.changes == 1
    route = table.lookup("git.localhost:5000")
    assert route is not None and route.endpoints == (service,) and route.request_timeout == 120
    table.set_app("shop", [WEB1])
    table.retain({"shop"})  # the manager's apps: the git service is none of them
    table.set_app("git", [WEB2])  # an app of that name (made before it was reserved)
    route = table.lookup("git.localhost")
    assert route is not None and route.endpoints == (service,)
    # Router processes get it with the rest.
    follower = RoutingTable("localhost")
    follower.apply_snapshot(json.loads(json.dumps(table.snapshot())))
    followed = follower.lookup("git.localhost")
    assert followed is not None and followed.endpoints == (service,)
