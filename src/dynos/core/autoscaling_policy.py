"""What a user asks autoscaling for: each process type's policy (the API's and the store's
JSON, ``ps:autoscale:enable``'s flags), read and checked, and the Redis keys of the queues a
worker policy names. core/autoscaling.py decides with it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from dynos.errors import UserError


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
