"""Round robin over an app's web dynos (pure function)."""

from __future__ import annotations

from dynos.router.balancer import round_robin
from dynos.router.routing_table import AppRoute, Backend

WEB = [Backend(f"web.{n}", "127.0.0.1", 5000 + n) for n in (1, 2, 3)]


def names(backends: tuple[Backend, ...]) -> list[str]:
    return [b.dyno for b in backends]


def test_each_request_starts_at_the_next_dyno_and_lists_the_others_after() -> None:
    route = AppRoute("foo", tuple(WEB))
    orders = [names(round_robin(route)) for _ in range(4)]
    assert orders == [
        ["web.1", "web.2", "web.3"],
        ["web.2", "web.3", "web.1"],
        ["web.3", "web.1", "web.2"],
        ["web.1", "web.2", "web.3"],
    ]


def test_turns_continue_when_the_dynos_change() -> None:
    route = AppRoute("foo", tuple(WEB))
    round_robin(route)
    round_robin(route)  # the cursor is past web.2
    route.backends = (WEB[0],)  # scaled down to one
    assert names(round_robin(route)) == ["web.1"]
    route.backends = tuple(WEB)
    assert len(round_robin(route)) == 3
