"""routes_from_dynos: which web dynos get an app's requests, and when the router holds or fails
them. Pure: plain records in, a frozen AppRoutes out."""

from __future__ import annotations

from dataclasses import dataclass

from dynos.core.app_settings import DEFAULT_REQUEST_TIMEOUT
from dynos.core.routes import AppRoutes, routes_from_dynos
from dynos.core.states import DynoState


@dataclass(frozen=True)
class Web:
    name: str
    state: DynoState
    port: int | None = None
    host: str = "127.0.0.1"
    stopping: bool = False
    restart_requested: bool = False
    held: bool = False


UP1 = Web("web.1", DynoState.UP, 5001)
UP2 = Web("web.2", DynoState.UP, 5002)


def test_up_dynos_with_a_port_get_the_requests() -> None:
    routes = routes_from_dynos("foo", {}, [UP1, UP2])
    assert routes == AppRoutes(
        "foo",
        (("web.1", "127.0.0.1", 5001), ("web.2", "127.0.0.1", 5002)),
        crashed=False,
        idle=False,
        request_timeout=DEFAULT_REQUEST_TIMEOUT,
    )


def test_a_stopping_or_portless_dyno_gets_no_requests() -> None:
    draining = Web("web.2", DynoState.UP, 5002, stopping=True)
    unbound = Web("web.3", DynoState.UP, None)
    routes = routes_from_dynos("foo", {}, [UP1, draining, unbound])
    assert routes.upstreams == (("web.1", "127.0.0.1", 5001),)
    assert not routes.idle  # web.1 serves: nothing to hold


def test_an_app_whose_dynos_are_all_coming_is_idle_so_the_router_holds_requests() -> None:
    for coming in (
        Web("web.1", DynoState.STARTING, 5001),
        Web("web.1", DynoState.IDLE),
        Web("web.1", DynoState.CRASHED, restart_requested=True),
        Web("web.1", DynoState.UP, 5001, stopping=True),
        Web("web.1", DynoState.DOWN),  # stopped for a restart: its successor starts next
    ):
        routes = routes_from_dynos("foo", {}, [coming])
        assert routes.upstreams == () and routes.idle and not routes.crashed, coming


def test_an_app_whose_dynos_all_crashed_is_crashed_unless_one_is_coming_back() -> None:
    crashed = [Web("web.1", DynoState.CRASHED), Web("web.2", DynoState.CRASHED)]
    routes = routes_from_dynos("foo", {}, crashed)
    assert routes.crashed and not routes.idle and routes.upstreams == ()
    restarting = [crashed[0], Web("web.2", DynoState.CRASHED, restart_requested=True)]
    assert not routes_from_dynos("foo", {}, restarting).crashed
    one_up = [crashed[0], UP2]
    assert routes_from_dynos("foo", {}, one_up) == AppRoutes(
        "foo", (("web.2", "127.0.0.1", 5002),), crashed=False, idle=False, request_timeout=30.0
    )


def test_an_app_without_web_dynos_has_no_routes_and_is_neither_crashed_nor_idle() -> None:
    assert routes_from_dynos("foo", {}, []) == AppRoutes(
        "foo", (), crashed=False, idle=False, request_timeout=DEFAULT_REQUEST_TIMEOUT
    )


def test_the_apps_request_timeout_setting_is_used() -> None:
    assert routes_from_dynos("foo", {"request_timeout": 5}, [UP1]).request_timeout == 5.0


def test_the_apps_custom_domains_route_to_it_whatever_its_dynos() -> None:
    hosts = ("api.example.com", "www.example.com")
    assert routes_from_dynos("foo", {}, [UP1], hosts).hosts == hosts
    assert routes_from_dynos("foo", {}, [], hosts).hosts == hosts  # H14, as for foo.<domain>
    assert routes_from_dynos("foo", {}, [UP1]).hosts == ()


def test_a_held_preboot_dyno_gets_no_request_until_its_switch() -> None:
    held = Web("web.1", DynoState.UP, 5003, held=True)
    old = Web("web.1.v5", DynoState.UP, 5001)
    assert routes_from_dynos("foo", {}, [held, old]).upstreams == (("web.1.v5", "127.0.0.1", 5001),)
    released = Web("web.1", DynoState.UP, 5003)
    assert routes_from_dynos("foo", {}, [released]).upstreams == (("web.1", "127.0.0.1", 5003),)


def test_a_dyno_is_routed_at_the_host_its_backend_gives() -> None:
    container = Web("web.1", DynoState.UP, 5001, host="172.19.0.2")
    assert routes_from_dynos("foo", {}, [container]).upstreams == (("web.1", "172.19.0.2", 5001),)
