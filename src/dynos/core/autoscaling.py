"""When to add or remove dynos: the autoscalers' rules, without clocks, sockets or Redis.

**Web** (``WebAutoscaler``), sampled every ``SAMPLE_EVERY`` second with the router's view of
the process type: the p95 of the response (or queue) time over the last minute (the *stable*
window, as Knative's) and over the last 10 s (the *panic* window), the rates at which
requests arrive and are answered over the last 2 s, the requests the router holds now (in
flight: sent to a dyno, or waiting for one), and the requests it gave up on lately.

- *Up* when the stable p95 is over the target and the panic p95 still is; or in a *panic*:
  the panic p95 over twice the target, or (p95 targets) the *wait* of the requests in flight,
  ``in_flight / answered`` (Little's law: the mean response time a request arriving now can
  expect), over twice the target. The wait rises within a second of a step, while the p95 of
  answered requests only shows it once the backlog's first requests come back: a dyno's
  accept queue filled in 3 s at bench/autoscale.py's step, and requests the router could not
  connect for 5 s were answered H19. Not when the dynos answer more than arrives
  (``DRAINING``): then the backlog drains by itself. Busy dynos over their target answer
  about as fast as they can, so ``answered / q`` is what one dyno can take: the best such
  reading of the last ``CAPACITY_MEMORY`` seconds (``_learn`` says which readings count).
  The step is to ``ceil(arrived / that / UTILISATION)`` dynos: at least one more (just one
  while that is unknown), never more than doubling except in a panic (Knative's panic mode:
  a backlog that grows each second must not wait for a step per 30 s).
  After a change nothing happens until the new dynos are up and ``SETTLE`` seconds of traffic
  have reached them, but while the wait is over twice the target and fewer are answered
  than arrive: then up again at once to what the arrivals need (never down).
- *Down* one dyno at a time (Heroku's pace), and only when every sample of ``DOWN_AFTER``
  seconds was under half the target, the last change is ``DOWN_AFTER`` old, and the dynos
  left would each take less than ``DOWN_HEADROOM`` of what one can take and of the load per
  dyno at the last sample over the target (``_room_for``). Without that last
  rule a steady load that needs ``q`` dynos and is fast with ``q`` would be scaled to
  ``q - 1``, slow again, and scaled back: a flap. The band between half the target and the
  target holds.

**Worker** (``WorkerAutoscaler``): desired = ``ceil(depth / per_dyno)`` between min and max,
as KEDA's list scaler counts, where depth counts the jobs waiting and the jobs running. Up at
once; down only after the depth asked for fewer dynos for ``cooldown`` seconds (a worker
stopped mid-job finishes it in its SIGTERM grace, but a cooldown keeps a bursty queue from
paying a boot per burst).

Every decision says why: the metric, the target and the new quantity (what the
``app[autoscaler]`` log line and the events show).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from dynos.core.autoscaling_policy import WebMetric, WebPolicy, WorkerPolicy

SAMPLE_EVERY = 1.0  # seconds between web samples: a step is seen within a second or two
SETTLE = 20.0  # seconds of traffic the new dynos get before the next decision
DOWN_AFTER = 120.0  # seconds every sample must ask for fewer dynos before one goes
DOWN_HEADROOM = 0.7  # of what one dyno could take at the last breach, after a scale-down
UTILISATION = 0.8  # of what one dyno can take, that an upscale plans for
DRAINING = 1.1  # answered / arrived over which the backlog drains by itself
LOW = 0.5  # of the target, under which the type may have too many dynos
PANIC = 2.0  # times the target, over which the type scales at once to what arrivals need
CAPACITY_MEMORY = 60.0  # seconds a reading of what one dyno can take is kept
RATE_WINDOW = 2  # seconds of the arrival and answer rates: a step is seen at once


@dataclass(frozen=True)
class WebSample:
    at: float  # seconds (the manager's clock)
    stable_ms: float | None  # p95 over the stable window; None without requests
    panic_ms: float | None  # p95 over the panic window; None without requests
    arrivals: float  # requests per second that reached the router for the type, just now
    answered: float  # requests per second the type's dynos answered, just now
    in_flight: int = 0  # requests the router holds for the type now (sent or waiting)
    failed: float = 0.0  # requests per second the router gave up on (H12, H19, ...) lately
    busy: int = 0  # the fewest requests in flight at any reading of the rate window

    @property
    def wait_ms(self) -> float | None:
        """How long the requests in flight take to be answered at the rate the dynos answer
        (Little's law: the mean response time a request arriving now can expect). It rises
        the second a backlog forms, long before the answered requests' p95 shows it."""
        if self.answered <= 0:
            return None
        return self.in_flight / self.answered * 1000


@dataclass(frozen=True)
class Decision:
    quantity: int
    previous: int
    metric: str  # what was measured, as the log line shows it: "p95=812ms", "depth=40"
    target: str  # "p95<500ms", "20/dyno"
    reason: str  # "over target", "panic", "under half the target", "queue empty", ...

    @property
    def line(self) -> str:
        """The ``app[autoscaler]`` log line."""
        return (
            f"scale from={self.previous} to={self.quantity} {self.metric} "
            f'target={self.target} reason="{self.reason}"'
        )


class Phase(Enum):
    """What the web autoscaler waits for."""

    WATCHING = "watching"  # sampling; may decide on this sample
    SETTLING = "settling"  # a change was made: its dynos start and take traffic first


@dataclass
class WebAutoscaler:
    policy: WebPolicy
    phase: Phase = Phase.WATCHING
    changed_at: float = -math.inf
    up_since: float | None = None  # when the last change's dynos were all up
    low_since: float | None = None  # first of the run of samples under LOW * target
    capacity_per_dyno: float | None = None  # learnt: answered / q while over the target
    readings: deque[tuple[float, float]] = field(default_factory=deque)  # (at, answered / q)
    breach_load: float | None = None  # arrivals per dyno up at the last sample over target
    serving: int | None = None  # the type's dynos up at the last sample
    serving_since: float = -math.inf  # since when that many are (before the first: long)
    decisions: list[Decision] = field(default_factory=list)

    def observe(self, sample: WebSample, quantity: int, starting: int) -> Decision | None:
        """The decision for this sample (None: keep ``quantity``). ``starting``: how many of
        the type's dynos are not up yet."""
        policy = self.policy
        if quantity < policy.minimum or quantity > policy.maximum:
            wanted = _clamp(quantity, policy)
            return self._decide(sample.at, quantity, wanted, sample, "outside min..max")
        stable, panic, target = sample.stable_ms, sample.panic_ms, policy.target_ms
        # The backlog's wait is a response time: it stands for the p95 only. A queue-time
        # target is the router's own wait, which a dyno's accept queue hides from it.
        wait = sample.wait_ms if policy.metric is WebMetric.RESPONSE_TIME else None
        backlog = wait is not None and wait > PANIC * target
        panicking = backlog or (panic is not None and panic > PANIC * target)
        # Over the minute, and still over now: a minute's p95 keeps a drained backlog's
        # waits for a minute after the dynos caught up.
        breached = stable is not None and stable > target and (panic is None or panic > target)
        if self.serving is not None and quantity - starting != self.serving:
            self.serving_since = sample.at
        self.serving = quantity - starting
        if panicking or breached:
            self._learn(sample, quantity - starting)
            if quantity > starting:
                self.breach_load = sample.arrivals / (quantity - starting)
        if self.phase is Phase.SETTLING:
            # While requests in flight wait and their backlog still grows, the step may have
            # been too small (it was decided on the step's first second): up again at once
            # when the arrivals need more, as Knative's panic mode does; never down, never
            # on a guess. On the wait only: the 10 s p95 still holds the waits of the
            # backlog the last step was for.
            needed = self._needed(sample.arrivals)
            grows = backlog and sample.answered < sample.arrivals
            if grows and needed is not None and quantity < min(needed, policy.maximum):
                wanted = min(policy.maximum, needed)
                return self._decide(sample.at, quantity, wanted, sample, self._why(backlog))
            if starting:
                self.up_since = None
                return None
            if self.up_since is None:
                self.up_since = sample.at
            if sample.at - self.up_since < SETTLE:
                return None
            self.phase = Phase.WATCHING
        if panicking or breached:
            self.low_since = None
            if sample.answered > DRAINING * sample.arrivals:
                return None  # more answered than arrives: the backlog drains by itself
            if quantity >= policy.maximum:
                return None
            wanted = self._needed(sample.arrivals) or quantity + 1
            # A panic goes straight to what the arrivals need, as Knative's panic mode does:
            # the backlog grows by the missing capacity every second, and doubling once per
            # sample and settle (30 s a step) let bench/autoscale.py's 5 -> 60/s step queue
            # requests past the router's 30 s timeout (docs/performance.md). A breach without
            # a panic: at most twice as many.
            ceiling = policy.maximum if panicking else min(policy.maximum, 2 * quantity)
            wanted = min(ceiling, max(quantity + 1, wanted))
            reason = self._why(backlog) if panicking else "over target"
            return self._decide(sample.at, quantity, wanted, sample, reason)
        if stable is None or stable < LOW * target:
            self.low_since = sample.at if self.low_since is None else self.low_since
        else:
            self.low_since = None
        if (
            quantity > policy.minimum
            and self.low_since is not None
            and sample.at - self.low_since >= DOWN_AFTER
            and sample.at - self.changed_at >= DOWN_AFTER
            and self._room_for(sample.arrivals, quantity - 1)
        ):
            self.low_since = None
            return self._decide(sample.at, quantity, quantity - 1, sample, "under half the target")
        return None

    def _needed(self, arrivals: float) -> int | None:
        """The dynos ``arrivals`` need at ``UTILISATION`` of what one can take; None before
        that is known."""
        if not self.capacity_per_dyno:
            return None
        return math.ceil(arrivals / self.capacity_per_dyno / UTILISATION)

    @staticmethod
    def _why(backlog: bool) -> str:
        if backlog:
            return "panic: the requests in flight wait over twice the target"
        return "panic: the last 10 s over twice the target"

    def _learn(self, sample: WebSample, serving: int) -> None:
        """What one dyno can take, from a sample over the target: ``answered`` by the
        ``serving`` dynos, each up and busy through the rate window: twice as many requests
        in flight as dynos at every reading of it, the one that opens it included (one served
        and one waiting each; a single one can be a light load's chance: at bench/autoscale.py's
        step a dyno idle half the window read as taking 10.5/s, and 4 dynos became 8). Busy
        dynos over their target answer about as fast as they can. The estimate is the best
        reading of the last ``CAPACITY_MEMORY`` seconds, for readings run low, never high:
        after a scale-up the backlog stays queued at the dynos that had it while the new
        ones, not yet busy, take the arrivals; requests the router gave up on (H12) still
        cost a serial app their time without being answered. A low estimate overshot and then
        held the extra dynos (the down rule keeps a dyno the rest could not take at that
        estimate), so readings taken while requests failed are left out (unless there is no
        other). A minute, not for ever: an app that became slower is seen within one."""
        if sample.at - self.serving_since < RATE_WINDOW:
            return
        if sample.answered <= 0 or serving < 1 or sample.busy < 2 * serving:
            return
        readings = self.readings
        while readings and readings[0][0] < sample.at - CAPACITY_MEMORY:
            readings.popleft()
        if sample.failed > 0 and readings:
            return
        readings.append((sample.at, sample.answered / serving))
        self.capacity_per_dyno = max(reading for _, reading in readings)

    def _room_for(self, arrivals: float, fewer: int) -> bool:
        """Whether ``fewer`` dynos take ``arrivals`` well below what one can take and below
        the load per dyno at the last breach: a target breached by queueing (10/s on one
        50 ms dyno against 200 ms) says less than a busy dyno's rate, which is never read
        there (too few requests in flight)."""
        bounds = [b for b in (self.capacity_per_dyno, self.breach_load) if b]
        if not bounds:
            return True
        return arrivals / fewer < DOWN_HEADROOM * min(bounds)

    def _decide(
        self, at: float, previous: int, quantity: int, sample: WebSample, reason: str
    ) -> Decision:
        name = self.policy.metric.value
        if "in flight" in reason:
            metric = f"wait={_ms(sample.wait_ms)}"
        else:
            shown = sample.panic_ms if reason.startswith("panic") else sample.stable_ms
            metric = f"{name}={_ms(shown)}"
        decision = Decision(
            quantity=quantity,
            previous=previous,
            metric=metric,
            target=f"{name}<{_ms(self.policy.target_ms)}",
            reason=reason,
        )
        self.phase, self.changed_at, self.up_since = Phase.SETTLING, at, None
        self.decisions.append(decision)
        return decision


@dataclass
class WorkerAutoscaler:
    policy: WorkerPolicy
    fewer_since: float | None = None  # first of the run of readings asking for fewer dynos
    decisions: list[Decision] = field(default_factory=list)

    def desired(self, depth: int) -> int:
        wanted = math.ceil(depth / self.policy.per_dyno)
        return _clamp(wanted, self.policy)

    def observe(self, at: float, depth: int, quantity: int) -> Decision | None:
        """The decision for a reading of ``depth`` jobs (waiting plus running) at ``at``."""
        wanted = self.desired(depth)
        if wanted > quantity or quantity > self.policy.maximum or quantity < self.policy.minimum:
            self.fewer_since = None
            return self._decide(quantity, max(wanted, _clamp(quantity, self.policy)), depth)
        if wanted == quantity:
            self.fewer_since = None
            return None
        self.fewer_since = at if self.fewer_since is None else self.fewer_since
        if at - self.fewer_since < self.policy.cooldown:
            return None
        self.fewer_since = None
        return self._decide(quantity, wanted, depth)

    def _decide(self, previous: int, quantity: int, depth: int) -> Decision:
        if quantity > previous:
            reason = "jobs waiting"
        elif depth == 0:
            reason = "queue empty"
        else:
            reason = "fewer jobs"
        decision = Decision(
            quantity=quantity,
            previous=previous,
            metric=f"depth={depth}",
            target=f"{self.policy.per_dyno}/dyno",
            reason=reason,
        )
        self.decisions.append(decision)
        return decision


def _clamp(quantity: int, policy: WebPolicy | WorkerPolicy) -> int:
    return max(policy.minimum, min(policy.maximum, quantity))


def _ms(value: float | None) -> str:
    return "none" if value is None else f"{value:.0f}ms"


@dataclass(frozen=True)
class HostRoom:
    """What a scale-up may have on this host: the decided quantity, or fewer."""

    quantity: int
    warning: str | None  # the ``app[autoscaler]`` line saying why it is fewer


def host_room(decision: Decision, size_mb: int, committed_mb: int, host_mb: int) -> HostRoom:
    """Cap a scale-up at what the host's memory holds: every dyno's memory quota
    (``committed_mb``, this type's current dynos included) must fit in ``host_mb``. The
    autoscaler never overcommits silently: fewer dynos, and a line that says so."""
    if decision.quantity <= decision.previous:
        return HostRoom(decision.quantity, None)
    more = max(0, host_mb - committed_mb) // size_mb
    room = decision.previous + min(more, decision.quantity - decision.previous)
    if room == decision.quantity:
        return HostRoom(room, None)
    return HostRoom(
        room,
        f"capacity wanted={decision.quantity} fits={room} committed={committed_mb}MB "
        f'host={host_mb}MB reason="the host holds no more dynos of {size_mb}MB: add memory, '
        f'a smaller size or a lower --max"',
    )
