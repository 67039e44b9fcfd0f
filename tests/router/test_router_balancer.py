"""Least outstanding requests between two random choices (pure function, no sockets)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

from dynos.router.balancer import pick_dyno
from dynos.router.dyno_slot import DynoSlot
from dynos.router.route import DynoEndpoint
from dynos.router.routing_table import RoutingTable

NOW = 1000.0


def slots(count: int) -> tuple[DynoSlot, ...]:
    table = RoutingTable("localhost")
    table.set_app("foo", [DynoEndpoint(f"web.{n}", "127.0.0.1", 5000 + n) for n in range(count)])
    route = table.lookup("foo.localhost")
    assert route is not None
    return route.slots


def draws(*values: float) -> Iterator[float]:
    yield from values


def test_the_less_busy_of_two_dynos_is_picked() -> None:
    a, b = slots(2)
    a.in_flight = 3
    b.in_flight = 1
    assert pick_dyno((a, b), NOW, random.random) is b
    b.in_flight = 5
    assert pick_dyno((a, b), NOW, random.random) is a


def test_two_idle_dynos_share_requests_about_evenly() -> None:
    pair = slots(2)
    rng = random.Random(7)
    picked = Counter(pick_dyno(pair, NOW, rng.random) for _ in range(1000))
    assert 400 < picked[pair[0]] < 600


def test_of_many_dynos_the_less_busy_of_the_two_drawn_is_picked() -> None:
    many = slots(5)
    for n, slot in enumerate(many):
        slot.in_flight = 10 - n  # web.4 is the least busy, but is not drawn
    values = draws(0.0, 0.5)
    picked = pick_dyno(many, NOW, lambda: next(values))
    # first draw: int(0.0 * 5) = 0 (web.0); second: int(0.5 * 4) = 2, shifted past 0 -> 3
    assert picked is many[3]


def test_the_two_draws_are_always_different_dynos() -> None:
    many = slots(3)
    many[0].in_flight = 1
    values = draws(0.0, 0.0)  # both draws say "index 0": the second is moved to index 1
    assert pick_dyno(many, NOW, lambda: next(values)) is many[1]


def test_a_busy_dyno_gets_no_request_while_an_idle_one_is_drawn_with_it() -> None:
    many = slots(4)
    many[2].in_flight = 50  # a slow dyno, its requests queued
    rng = random.Random(1)
    picked = Counter(pick_dyno(many, NOW, rng.random) for _ in range(400))
    # every draw pairs it with an idle dyno, which wins
    assert picked[many[2]] == 0


def test_a_quarantined_dyno_is_passed_over() -> None:
    a, b = slots(2)
    a.quarantined_until = NOW + 1
    a.in_flight = 0
    b.in_flight = 9
    assert all(pick_dyno((a, b), NOW, random.random) is b for _ in range(20))


def test_quarantine_ends() -> None:
    a, b = slots(2)
    a.quarantined_until = NOW - 0.1
    b.in_flight = 1
    assert pick_dyno((a, b), NOW, random.random) is a


def test_when_every_dyno_is_quarantined_one_is_still_tried() -> None:
    many = slots(3)
    for slot in many:
        slot.quarantined_until = NOW + 1
    assert pick_dyno(many, NOW, random.random) in many


def test_dynos_already_tried_are_never_picked_again() -> None:
    many = slots(3)
    tried = [many[0], many[2]]
    assert all(pick_dyno(many, NOW, random.random, tried) is many[1] for _ in range(20))


def test_none_when_every_dyno_was_tried() -> None:
    many = slots(2)
    assert pick_dyno(many, NOW, random.random, list(many)) is None
    assert pick_dyno((), NOW, random.random) is None


def test_a_single_dyno_is_picked_even_when_quarantined() -> None:
    (only,) = slots(1)
    only.quarantined_until = NOW + 1
    assert pick_dyno((only,), NOW, random.random) is only
