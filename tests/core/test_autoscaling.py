"""core/autoscaling.py: the web autoscaler against a model of the bench's serial app (one
request at a time per dyno, 50 ms each), and the worker autoscaler's counting. No clock but
the samples' own times."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dynos.core.autoscaling import (
    CAPACITY_MEMORY,
    DOWN_AFTER,
    SAMPLE_EVERY,
    SETTLE,
    Decision,
    HostRoom,
    WebAutoscaler,
    WebSample,
    WorkerAutoscaler,
    host_room,
)
from dynos.core.autoscaling_policy import (
    WebMetric,
    WebPolicy,
    WorkerPolicy,
    parse_policy,
    policy_json,
    queue_keys,
)
from dynos.errors import UserError

SERVICE = 0.05  # seconds per request on one dyno: the serial app of bench/apps
BOOT = 5.0  # seconds a new dyno takes to be up


@dataclass
class SerialApp:
    """A fluid model of dynos that each serve one request at a time: a backlog grows while
    arrivals exceed what the dynos serve, and the p95 is the service time plus the wait for
    the backlog and for the requests ahead in a busy queue (M/D/c-like, rough but monotone).
    The requests in flight are the backlog and those being served or queued briefly."""

    quantity: int
    backlog: float = 0.0
    booting: list[float] = field(default_factory=list)  # when each new dyno will be up
    history: list[float] = field(default_factory=list)  # each sample's p95 in ms

    def step(self, now: float, arrivals: float) -> tuple[float, float, int, int]:
        """A sample's worth of ``arrivals`` per second: this sample's p95 in ms, the
        requests answered per second, the dynos not up yet and the requests in flight."""
        self.booting = [t for t in self.booting if t > now]
        serving = self.quantity - len(self.booting)
        capacity = serving / SERVICE
        answered = min(capacity, arrivals + self.backlog / SAMPLE_EVERY)
        self.backlog = max(0.0, self.backlog + (arrivals - capacity) * SAMPLE_EVERY)
        load = min(arrivals / capacity, 0.99) if capacity else 0.99
        queueing = SERVICE * 3 * load / (1 - load) / max(serving, 1)
        p95 = (SERVICE + queueing + (self.backlog / capacity if capacity else 60.0)) * 1000
        self.history.append(p95)
        in_flight = round(self.backlog + min(arrivals, capacity) * (SERVICE + queueing / 3))
        return p95, answered, len(self.booting), in_flight

    def scale(self, now: float, quantity: int) -> None:
        if quantity > self.quantity:
            self.booting += [now + BOOT] * (quantity - self.quantity)
        else:
            self.booting = self.booting[: max(0, len(self.booting) - (self.quantity - quantity))]
        self.quantity = quantity


def run(
    autoscaler: WebAutoscaler, app: SerialApp, load: list[tuple[float, float]], until: float
) -> list[tuple[float, int]]:
    """Drive the model: ``load`` is (from second, requests per second) steps. The
    quantity after each decision, with its time."""
    changes: list[tuple[float, int]] = []
    in_flights: list[int] = []
    now = 0.0
    while now < until:
        now += SAMPLE_EVERY
        rate = [r for start, r in load if start < now][-1]
        _, answered, starting, in_flight = app.step(now, rate)
        in_flights.append(in_flight)
        # the windows' p95 are at least each sample's in them
        stable, panic = max(app.history[-60:]), max(app.history[-10:])
        busy = min(in_flights[-3:])  # at each reading of the last 2 s
        sample = WebSample(now, stable, panic, rate, answered, in_flight=in_flight, busy=busy)
        decision = autoscaler.observe(sample, app.quantity, starting)
        if decision is not None:
            app.scale(now, decision.quantity)
            changes.append((now, decision.quantity))
    return changes


def reversals(changes: list[tuple[float, int]], start: int) -> int:
    directions = []
    last = start
    for _, quantity in changes:
        directions.append(quantity > last)
        last = quantity
    return sum(1 for a, b in itertools.pairwise(directions) if a != b)


def web(minimum: int = 1, maximum: int = 10, target: float = 500) -> WebAutoscaler:
    return WebAutoscaler(WebPolicy(minimum, maximum, WebMetric.RESPONSE_TIME, target))


def test_a_step_from_5_to_60_requests_a_second_is_absorbed_without_a_reversal() -> None:
    autoscaler, app = web(), SerialApp(quantity=1)
    changes = run(autoscaler, app, [(0, 5), (60, 60)], until=1800)
    assert reversals(changes, 1) <= 1
    # 60/s at 50 ms is 3 dynos' worth: four or five serve it under the target.
    assert 4 <= app.quantity <= 6
    assert app.history[-1] < 500
    step = int(60 / SAMPLE_EVERY)
    back_under = next(i for i, p in enumerate(app.history) if i > step and p < 500) - step
    assert back_under * SAMPLE_EVERY < 60, changes
    # The first decision came within a sample of the step, in a panic, and enough dynos were
    # asked for within three (the dynos' boot is not waited for in a panic).
    assert changes[0][0] <= 60 + SAMPLE_EVERY and "panic" in autoscaler.decisions[0].reason
    assert max(q for t, q in changes if t <= 60 + 3 * SAMPLE_EVERY) >= 4, changes


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(1, 150), start=st.integers(1, 10), target=st.sampled_from([200, 500, 1000]))
@example(rate=10.0, start=1, target=200)
def test_a_steady_load_settles_and_never_flaps(rate: float, start: int, target: float) -> None:
    autoscaler, app = web(target=target), SerialApp(quantity=start)
    changes = run(autoscaler, app, [(0, rate)], until=3 * 3600)
    assert reversals(changes, start) <= 1, changes
    late = [c for c in changes if c[0] > 3600]
    assert late == [] or all(q == late[0][1] for _, q in late[1:]), changes
    # And it settles where the load is served within the target, unless capped (a p95 at the
    # target is not over it: 10/s on one dyno is 200 ms in the model, and nothing moves).
    if app.quantity < 10:
        assert app.history[-1] <= target


def test_when_the_load_drops_one_dyno_goes_at_a_time_and_no_faster_than_down_after() -> None:
    autoscaler, app = web(), SerialApp(quantity=1)
    changes = run(autoscaler, app, [(0, 60), (1200, 5)], until=3600)
    befores = [1, *(q for _, q in changes)]
    downs = [(t, q, b) for (t, q), b in zip(changes, befores, strict=False) if q < b]
    assert downs and downs[-1][1] == 1
    assert {before - q for _, q, before in downs} == {1}
    times = [t for t, _, _ in downs]
    assert all(b - a >= DOWN_AFTER for a, b in itertools.pairwise(times))


def test_quantities_stay_within_min_and_max_and_a_quantity_outside_is_brought_back() -> None:
    autoscaler, app = web(minimum=2, maximum=3), SerialApp(quantity=5)
    changes = run(autoscaler, app, [(0, 200)], until=600)
    assert changes[0] == (SAMPLE_EVERY, 3)
    assert all(2 <= q <= 3 for _, q in changes)
    assert autoscaler.decisions[0].line == (
        'scale from=5 to=3 p95=4020ms target=p95<500ms reason="outside min..max"'
    )
    assert len(changes) == 1  # and at the maximum, over target, it stays there


def test_no_decision_while_new_dynos_start_or_settle() -> None:
    # Over the target but no panic (the last 10 s under twice it): at most doubling a step.
    autoscaler = web()
    first = autoscaler.observe(WebSample(10, 2000, 800, 60, 20, busy=5), quantity=1, starting=0)
    assert first is not None and first.quantity == 2 and first.reason == "over target"
    assert autoscaler.observe(WebSample(20, 2000, 800, 60, 20), quantity=2, starting=1) is None
    assert (
        autoscaler.observe(WebSample(30, 2000, 800, 60, 40, busy=5), quantity=2, starting=0) is None
    )
    assert (
        autoscaler.observe(WebSample(40, 2000, 800, 60, 40, busy=5), quantity=2, starting=0) is None
    )
    again = autoscaler.observe(WebSample(50, 2000, 800, 60, 40, busy=5), quantity=2, starting=0)
    assert again is not None and again.quantity == 4  # 60/s at 20 per dyno, with room: 4


def test_a_panic_goes_straight_to_what_the_arrivals_need_within_max() -> None:
    # bench/autoscale.py's step: one dyno answering its 20/s, 60/s arriving, the last 10 s
    # p95 at 5.9 s. Doubling (1, 2, 4, 30 s a step) queued requests past the router's 30 s.
    decision = web().observe(WebSample(10, 1200, 5888, 60, 20, busy=9), quantity=1, starting=0)
    assert decision is not None and decision.quantity == 4  # 60 / 20 / 0.8, rounded up
    assert decision.reason.startswith("panic")
    capped = web(maximum=3).observe(
        WebSample(10, 1200, 5888, 60, 20, busy=9), quantity=1, starting=0
    )
    assert capped is not None and capped.quantity == 3


def test_a_step_is_seen_from_the_requests_in_flight_and_sized_a_second_later() -> None:
    # Under a second after bench/autoscale.py's step: the answered requests are still fast
    # (p95 80 ms over 10 s), but 30 wait at one dyno that answers 10/s over the last 2 s
    # (it was idle at their start, so that is not what it can take).
    sample = WebSample(60.8, 60, 80, 32.5, 10, in_flight=30, busy=0)
    assert sample.wait_ms == pytest.approx(3000)
    autoscaler = web()
    first = autoscaler.observe(sample, quantity=1, starting=0)
    assert first is not None and first.quantity == 2  # what one can take is not known yet
    assert first.line == (
        "scale from=1 to=2 wait=3000ms target=p95<500ms "
        'reason="panic: the requests in flight wait over twice the target"'
    )
    # A second later the dyno was busy through the window: 20/s is what one takes, and the
    # arrivals need 4; the panic does not wait for the new dyno and its settling.
    later = WebSample(61.8, 80, 300, 60, 20, in_flight=70, busy=30)
    second = autoscaler.observe(later, quantity=2, starting=1)
    assert second is not None and second.quantity == 4
    # Settling, and no panic need more: nothing.
    assert autoscaler.observe(replace(later, at=62.8), quantity=4, starting=2) is None
    # Nor while the 10 s p95 still holds the backlog's waits (70/s would need 5), nor while
    # the first dyno's backlog waits but the four answer more than arrives: it drains.
    stale = WebSample(66, 900, 2200, 70, 70, in_flight=8, busy=4)
    assert autoscaler.observe(stale, quantity=4, starting=0) is None
    draining = WebSample(67, 900, 2200, 70, 75, in_flight=100, busy=90)
    assert draining.wait_ms is not None and draining.wait_ms > 1000
    assert autoscaler.observe(draining, quantity=4, starting=0) is None
    # One request in flight at each reading is no proof of a busy dyno (a light load has
    # one now and then): what 10.5/s answered says of a dyno is not taken from it.
    chance = web()
    assert chance.observe(WebSample(60.8, 60, 80, 32.5, 10.5, in_flight=30, busy=1), 1, 0)
    assert chance.capacity_per_dyno is None
    # A queue-time target is the router's own wait: the dynos' backlog is not it.
    queue_time = WebAutoscaler(WebPolicy(1, 10, WebMetric.QUEUE_TIME, 50))
    assert queue_time.observe(WebSample(60.8, 5, 5, 32.5, 10, in_flight=30), 1, 0) is None
    # Many in flight but answered fast is no backlog: 6 at 60/s wait 100 ms.
    assert web().observe(WebSample(61.5, 90, 90, 60, 60, in_flight=6), 3, 0) is None
    # Nothing answered yet: no wait to tell, and nothing decided from it.
    assert web().observe(WebSample(61.5, None, None, 5, 0, in_flight=3), 1, 0) is None


def settled(autoscaler: WebAutoscaler, at: float, quantity: int) -> float:
    """Let the last change's dynos come up and settle; the time after."""
    quiet = WebSample(at, 100, 100, 60, 60)
    assert autoscaler.observe(quiet, quantity, starting=quantity - 1) is None
    assert autoscaler.observe(replace(quiet, at=at + 1), quantity, starting=0) is None
    return at + 1 + SETTLE


def test_what_a_dyno_can_take_is_not_lowered_by_a_pinned_backlog_or_failed_requests() -> None:
    autoscaler = web()
    first = autoscaler.observe(WebSample(61, 300, 300, 60, 20, in_flight=60, busy=40), 1, 0)
    assert first is not None and first.quantity == 4 and autoscaler.capacity_per_dyno == 20
    at = settled(autoscaler, 62, 4)
    # The first dyno still works through its backlog while the three new ones take the
    # arrivals; and requests the router gave up on cost the app without being answered:
    # answered / q reads 12.5 and 14.5. An estimate lowered to them asked for 6 and kept 6.
    pinned = WebSample(at, 2000, 1900, 60, 50, in_flight=120, failed=2, busy=100)
    assert autoscaler.observe(pinned, 4, 0) is not None  # the backlog grows: one more
    assert autoscaler.capacity_per_dyno == 20
    assert autoscaler.decisions[-1].quantity == 5
    at = settled(autoscaler, at + 1, 5)
    # 14/s each while the old backlog drains: read, and the estimate stays.
    draining = WebSample(at, 2000, 1900, 60, 70, in_flight=90, busy=80)
    assert autoscaler.observe(draining, 5, 0) is None
    assert autoscaler.capacity_per_dyno == 20
    # A minute later that reading is forgotten: an app that became slower is seen.
    slower = WebSample(at + CAPACITY_MEMORY + 1, 2000, 1900, 60, 55, in_flight=200, busy=150)
    decision = autoscaler.observe(slower, 5, 0)
    assert autoscaler.capacity_per_dyno == 11
    assert decision is not None and decision.quantity == 7  # 60 / 11 / 0.8, rounded up


def test_queue_time_is_a_metric_of_its_own_in_the_log_line() -> None:
    autoscaler = WebAutoscaler(WebPolicy(1, 4, WebMetric.QUEUE_TIME, 50))
    decision = autoscaler.observe(WebSample(10, 80, 60, 30, 30), quantity=1, starting=0)
    assert decision is not None
    assert decision.line == (
        'scale from=1 to=2 queue-time=80ms target=queue-time<50ms reason="over target"'
    )


@pytest.mark.parametrize(("minimum", "maximum", "target"), [(0, 2, 500), (3, 2, 500), (1, 2, 0)])
def test_a_web_policy_out_of_range_is_refused(minimum: int, maximum: int, target: float) -> None:
    with pytest.raises(ValueError):
        WebPolicy(minimum, maximum, WebMetric.RESPONSE_TIME, target)


def worker(minimum: int = 0, maximum: int = 8, cooldown: float = 30) -> WorkerAutoscaler:
    return WorkerAutoscaler(WorkerPolicy(minimum, maximum, ("rq:default",), 20, cooldown))


@given(depth=st.integers(0, 10_000))
def test_desired_workers_are_the_depth_over_per_dyno_rounded_up_within_the_range(
    depth: int,
) -> None:
    assert worker().desired(depth) == min(8, math.ceil(depth / 20))
    assert worker(minimum=2).desired(depth) == max(2, min(8, math.ceil(depth / 20)))


def test_workers_wake_at_once_and_sleep_only_after_the_cooldown() -> None:
    autoscaler = worker(cooldown=30)
    up = autoscaler.observe(0.0, depth=1, quantity=0)
    assert up is not None and up.quantity == 1 and up.reason == "jobs waiting"
    burst = autoscaler.observe(1.0, depth=400, quantity=1)
    assert burst is not None and burst.quantity == 8
    assert autoscaler.observe(5.0, depth=0, quantity=8) is None  # the cooldown starts
    assert autoscaler.observe(20.0, depth=0, quantity=8) is None
    assert autoscaler.observe(30.0, depth=3, quantity=8) is None  # still fewer: same run
    down = autoscaler.observe(35.0, depth=0, quantity=8)
    assert down is not None and down.quantity == 0 and down.reason == "queue empty"
    assert down.line == 'scale from=8 to=0 depth=0 target=20/dyno reason="queue empty"'


def test_a_reading_that_asks_for_as_many_again_restarts_the_cooldown() -> None:
    autoscaler = worker(cooldown=30)
    assert autoscaler.observe(0.0, depth=0, quantity=2) is None
    assert autoscaler.observe(20.0, depth=40, quantity=2) is None  # two dynos' worth again
    assert autoscaler.observe(40.0, depth=0, quantity=2) is None
    down = autoscaler.observe(70.0, depth=0, quantity=2)
    assert down is not None and down.quantity == 0


@pytest.mark.parametrize(
    ("minimum", "maximum", "per_dyno", "queues"),
    [
        (-1, 2, 1, ("rq:default",)),
        (0, 0, 1, ("rq:default",)),
        (0, 2, 0, ("rq:default",)),
        (0, 2, 1, ()),
    ],
)
def test_a_worker_policy_out_of_range_is_refused(
    minimum: int, maximum: int, per_dyno: int, queues: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        WorkerPolicy(minimum, maximum, queues, per_dyno)


@pytest.mark.parametrize(
    ("type_", "body", "said"),
    [
        ("worker", {"max": 3, "per_dyno": 5}, "Name the queues"),
        ("worker", {"max": 3, "queue": ["rq:a b"], "per_dyno": 5}, "is not rq:NAME"),
        ("worker", {"max": 3, "queue": "sidekiq:x", "per_dyno": 5}, "is not rq:NAME"),
        ("worker", {"max": 3, "queue": "rq:x"}, "needs --per-dyno"),
        ("worker", {"max": 3, "queue": "rq:x", "per_dyno": 0}, "--per-dyno must be 1"),
        ("worker", {"max": 3, "queue": "rq:x", "per_dyno": True}, "whole number"),
        ("worker", {"max": 3, "queue": "rq:x", "per_dyno": 2, "p95": 5}, "only web has"),
        ("worker", {"min": 4, "max": 3, "queue": "rq:x", "per_dyno": 2}, "at least --min"),
        ("worker", {"max": 101, "queue": "rq:x", "per_dyno": 2}, "from 0 to 100"),
        ("worker", {"max": 3, "queue": "rq:x", "per_dyno": 2, "colour": 1}, "Unknown"),
        ("web", {"max": 3}, "one target"),
        ("web", {"max": 3, "p95": 500, "queue_time": 50}, "one target"),
        ("web", {"min": 0, "max": 3, "p95": 500}, "at least one dyno"),
        ("web", {"max": 3, "queue": "rq:x", "p95": 5}, "not by a queue"),
    ],
)
def test_a_policy_is_refused_with_the_flag_to_fix(
    type_: str, body: dict[str, object], said: str
) -> None:
    with pytest.raises(UserError, match=re.escape(said)):
        parse_policy(type_, body)


def test_a_policy_reads_back_as_it_was_written() -> None:
    worker_policy = parse_policy(
        "worker", {"min": 0, "max": 8, "queue": "rq:default", "per_dyno": 20}
    )
    assert worker_policy == WorkerPolicy(0, 8, ("rq:default",), 20, 60.0)
    assert parse_policy("worker", policy_json(worker_policy)) == worker_policy
    web_policy = parse_policy("web", {"max": 10, "queue_time": 50})
    assert web_policy == WebPolicy(1, 10, WebMetric.QUEUE_TIME, 50.0)
    assert parse_policy("web", policy_json(web_policy)) == web_policy


def test_queue_keys_are_what_rq_and_celery_name_them() -> None:
    assert queue_keys("rq:default") == (["rq:queue:default"], ["rq:wip:default"])
    waiting, running = queue_keys("celery:celery")
    assert waiting[0] == "celery" and "celery\x06\x169" in waiting and running == []


def _up(previous: int, quantity: int) -> Decision:
    return Decision(quantity, previous, "depth=80", "20/dyno", "jobs waiting")


def test_a_scale_up_the_host_holds_is_left_alone() -> None:
    room = host_room(_up(1, 4), size_mb=512, committed_mb=1024, host_mb=24_000)
    assert room == HostRoom(4, None)


def test_a_scale_up_past_the_hosts_memory_is_capped_and_says_so() -> None:
    # 2 dynos of 14 GB committed on a 32 GB host: one more fits, not three.
    room = host_room(_up(2, 5), size_mb=14_336, committed_mb=28_672, host_mb=45_000)
    assert room.quantity == 3
    assert room.warning is not None
    assert room.warning.startswith("capacity wanted=5 fits=3 committed=28672MB host=45000MB")


def test_no_room_at_all_keeps_the_quantity_and_a_scale_down_is_never_capped() -> None:
    assert host_room(_up(1, 3), 14_336, 20_000, 24_000).quantity == 1
    down = Decision(1, 4, "depth=0", "20/dyno", "queue empty")
    assert host_room(down, 14_336, 90_000, 24_000) == HostRoom(1, None)
