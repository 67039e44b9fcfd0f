"""When to add or remove dynos: the autoscalers' rules, without clocks, sockets or Redis.

**Web** (``WebAutoscaler``), sampled every ``SAMPLE_EVERY`` seconds with the router's view of
the process type: the p95 of the response (or queue) time over the last minute (the *stable*
window, as Knative's), the same over the last 10 s (the *panic* window), the rate at which
requests arrive and the rate at which the dynos answer them.

- *Up* when the stable p95 is over the target and the panic p95 still is, or the panic p95
  is over twice the target (a sudden step must not wait a minute to be seen), unless the
  dynos already answer more than arrives (``DRAINING``): then the p95 is the backlog's, which
  shrinks by itself. Dynos over their target answer about as fast as they can, so at each
  breach ``answered / q`` is taken as what one dyno can take, and the step is to
  ``ceil(arrived / that / UTILISATION)`` dynos: at least one more, never more than doubling
  except in a panic (Knative's panic mode: a backlog that grows each second must not wait
  for a step per 30 s).
  After a change nothing happens until the new dynos are up and ``SETTLE`` seconds of traffic
  have reached them.
- *Down* one dyno at a time (Heroku's pace), and only when every sample of ``DOWN_AFTER``
  seconds was under half the target, the last change is ``DOWN_AFTER`` old, and the dynos
  left would each take less than ``DOWN_HEADROOM`` of what one could take at the last breach.
  Without that last rule a steady load that needs ``q`` dynos and is fast with ``q`` would be
  scaled to ``q - 1``, slow again, and scaled back: a flap. The band between half the target
  and the target holds.

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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from dynos.errors import UserError

SAMPLE_EVERY = 10.0  # seconds between web samples (Judoscale's and the router's minute / 6)
SETTLE = 20.0  # seconds of traffic the new dynos get before the next decision
DOWN_AFTER = 120.0  # seconds every sample must ask for fewer dynos before one goes
DOWN_HEADROOM = 0.7  # of what one dyno could take at the last breach, after a scale-down
UTILISATION = 0.8  # of what one dyno can take, that an upscale plans for
DRAINING = 1.1  # answered / arrived over which the backlog drains by itself
LOW = 0.5  # of the target, under which the type may have too many dynos


class WebMetric(Enum):
    RESPONSE_TIME = "p95"  # Heroku's: the router's p95 service time
    QUEUE_TIME = "queue-time"  # Judoscale's: how long requests waited before a dyno took them


@dataclass(frozen=True)
class WebPolicy:
    minimum: int
    maximum: int
    metric: WebMetric
    target_ms: float

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError("web autoscaling needs 1 <= min <= max")
        if self.target_ms <= 0:
            raise ValueError("the target must be above 0 ms")


@dataclass(frozen=True)
class WebSample:
    at: float  # seconds (the manager's clock)
    stable_ms: float | None  # p95 over the stable window; None without requests
    panic_ms: float | None  # p95 over the panic window; None without requests
    arrivals: float  # requests per second that reached the router for the type
    answered: float  # requests per second the type's dynos answered


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
    capacity_per_dyno: float | None = None  # learnt: answered / q at the last breach
    decisions: list[Decision] = field(default_factory=list)

    def observe(self, sample: WebSample, quantity: int, starting: int) -> Decision | None:
        """The decision for this sample (None: keep ``quantity``). ``starting``: how many of
        the type's dynos are not up yet."""
        policy = self.policy
        if quantity < policy.minimum or quantity > policy.maximum:
            wanted = _clamp(quantity, policy)
            return self._decide(sample.at, quantity, wanted, sample, "outside min..max")
        if self.phase is Phase.SETTLING:
            if starting:
                self.up_since = None
                return None
            if self.up_since is None:
                self.up_since = sample.at
            if sample.at - self.up_since < SETTLE:
                return None
            self.phase = Phase.WATCHING
        stable, panic, target = sample.stable_ms, sample.panic_ms, policy.target_ms
        panicking = panic is not None and panic > 2 * target
        # Over the minute, and still over now: a minute's p95 keeps a drained backlog's
        # waits for a minute after the dynos caught up.
        breached = stable is not None and stable > target and (panic is None or panic > target)
        if panicking or breached:
            self.low_since = None
            if sample.answered > DRAINING * sample.arrivals:
                return None  # more answered than arrives: the backlog drains by itself
            if sample.answered > 0:
                self.capacity_per_dyno = sample.answered / quantity
            if quantity >= policy.maximum:
                return None
            wanted = quantity + 1
            if self.capacity_per_dyno:
                wanted = math.ceil(sample.arrivals / self.capacity_per_dyno / UTILISATION)
            # A panic goes straight to what the arrivals need, as Knative's panic mode does:
            # the backlog grows by the missing capacity every second, and doubling once per
            # sample and settle (30 s a step) let bench/autoscale.py's 5 -> 60/s step queue
            # requests past the router's 30 s timeout (docs/performance.md). A breach without
            # a panic: at most twice as many.
            ceiling = policy.maximum if panicking else min(policy.maximum, 2 * quantity)
            wanted = min(ceiling, max(quantity + 1, wanted))
            reason = "panic: the last 10 s over twice the target" if panicking else "over target"
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

    def _room_for(self, arrivals: float, fewer: int) -> bool:
        """Whether ``fewer`` dynos take ``arrivals`` well below what one could take."""
        if self.capacity_per_dyno is None:
            return True
        return arrivals / fewer < DOWN_HEADROOM * self.capacity_per_dyno

    def _decide(
        self, at: float, previous: int, quantity: int, sample: WebSample, reason: str
    ) -> Decision:
        name = self.policy.metric.value
        shown = sample.panic_ms if reason.startswith("panic") else sample.stable_ms
        decision = Decision(
            quantity=quantity,
            previous=previous,
            metric=f"{name}={_ms(shown)}",
            target=f"{name}<{_ms(self.policy.target_ms)}",
            reason=reason,
        )
        self.phase, self.changed_at, self.up_since = Phase.SETTLING, at, None
        self.decisions.append(decision)
        return decision


@dataclass(frozen=True)
class WorkerPolicy:
    minimum: int
    maximum: int
    queues: tuple[str, ...]  # "rq:default", "celery:celery"
    per_dyno: int
    cooldown: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum or self.maximum < 1:
            raise ValueError("worker autoscaling needs 0 <= min <= max and max >= 1")
        if self.per_dyno < 1:
            raise ValueError("--per-dyno must be 1 or more")
        if not self.queues:
            raise ValueError("name at least one queue")


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


# -- what a user asks for ---------------------------------------------------------------------

QUEUE = re.compile(r"(rq|celery):([A-Za-z0-9_.-]{1,100})")
MAX_DYNOS = 100  # per process type, as ps:scale allows


def parse_policy(type_: str, body: Mapping[str, object]) -> WebPolicy | WorkerPolicy:
    """The policy ``body`` asks for ``type_`` (the API's and the store's JSON): ``min``,
    ``max``, and for web ``p95`` or ``queue_time`` (ms), for other types ``queue`` (a list of
    ``rq:NAME`` / ``celery:NAME``), ``per_dyno`` and optionally ``cooldown`` (s).
    UserError, naming the field, for anything else."""
    known = {"min", "max", "p95", "queue_time", "queue", "per_dyno", "cooldown"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise UserError(
            f"Unknown autoscaling field {unknown[0]!r}: use {', '.join(sorted(known))}."
        )
    minimum = _count(body, "min", 0 if type_ != "web" else 1)
    maximum = _count(body, "max", None)
    if maximum < minimum or maximum < 1:
        raise UserError("--max must be at least 1 and at least --min.")
    if type_ == "web":
        if "queue" in body or "per_dyno" in body:
            raise UserError("web dynos scale by --p95 or --queue-time, not by a queue.")
        if minimum < 1:
            raise UserError("web autoscaling keeps at least one dyno: --min 1 or more.")
        given = [name for name in ("p95", "queue_time") if body.get(name) is not None]
        if len(given) != 1:
            raise UserError("Give web autoscaling one target: --p95 MS or --queue-time MS.")
        metric = WebMetric.RESPONSE_TIME if given[0] == "p95" else WebMetric.QUEUE_TIME
        return WebPolicy(minimum, maximum, metric, float(_count(body, given[0], None, 60_000)))
    if "p95" in body or "queue_time" in body:
        raise UserError(f"{type_} dynos scale by --queue and --per-dyno; only web has --p95.")
    queues = body.get("queue")
    if isinstance(queues, str):
        queues = [queues]
    if not isinstance(queues, list) or not queues or len(queues) > 10:
        raise UserError("Name the queues to watch: --queue rq:NAME or celery:NAME (up to 10).")
    for queue in queues:
        if not isinstance(queue, str) or not QUEUE.fullmatch(queue):
            raise UserError(
                f"Queue {queue!r} is not rq:NAME or celery:NAME (NAME: letters, digits, _.-)."
            )
    per_dyno = _count(body, "per_dyno", None, 1_000_000)
    if per_dyno < 1:
        raise UserError("--per-dyno must be 1 or more.")
    cooldown = _count(body, "cooldown", 60, 86_400)
    return WorkerPolicy(minimum, maximum, tuple(dict.fromkeys(queues)), per_dyno, float(cooldown))


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


def policy_json(policy: WebPolicy | WorkerPolicy) -> dict[str, object]:
    """``policy`` as :func:`parse_policy` reads it back."""
    if isinstance(policy, WebPolicy):
        field_name = "p95" if policy.metric is WebMetric.RESPONSE_TIME else "queue_time"
        return {"min": policy.minimum, "max": policy.maximum, field_name: int(policy.target_ms)}
    return {
        "min": policy.minimum,
        "max": policy.maximum,
        "queue": list(policy.queues),
        "per_dyno": policy.per_dyno,
        "cooldown": int(policy.cooldown),
    }


def queue_keys(queue: str) -> tuple[list[str], list[str]]:
    """The Redis keys of ``queue``: (lists of jobs waiting, sorted sets of jobs running).
    RQ keeps a queue's jobs in the list ``rq:queue:NAME`` and the running ones in the sorted
    set ``rq:wip:NAME``; Celery's Redis transport keeps a queue in the list ``NAME`` (and its
    priority levels in ``NAME\\x06\\x16N``; the default steps are 3, 6 and 9)."""
    kind, name = queue.split(":", 1)
    if kind == "rq":
        return [f"rq:queue:{name}"], [f"rq:wip:{name}"]
    return [name, *(f"{name}\x06\x16{level}" for level in (3, 6, 9))], []


def _count(body: Mapping[str, object], name: str, default: int | None, top: int = MAX_DYNOS) -> int:
    value = body.get(name, default)
    if value is None:
        raise UserError(f"Autoscaling needs --{name.replace('_', '-')}.")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise UserError(f"--{name.replace('_', '-')} must be a whole number from 0 to {top}.")
    return value
