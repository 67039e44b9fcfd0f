"""Heroku's metrics, per app and process type, in periods of a minute (kept 24 h) and of ten
minutes (kept 7 days): what a period holds, how the router's cumulative counts become
periods, how periods roll up and how they are read as the API's columns. Pure: ``now`` in.

The router counts per request into cumulative figures (router/metrics.py); the server reads
their sum over every router process once a second (``Recorder.requests``), and what changed
since the last reading goes into the open minute and into a ring of one-second slots (the web
autoscaler's windows, ``Recorder.window``). The manager's samples of each dyno's memory and
load go into the open minute too (``Recorder.usage``). A minute is handed to the store once
it is over (``Recorder.due``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dynos.core import latency
from dynos.errors import UserError

K = TypeVar("K")
MINUTE = 60
TEN_MINUTES = 600
KEEP_MINUTES = 24 * 3600  # seconds of one-minute periods kept
KEEP_TEN_MINUTES = 7 * 24 * 3600
RING_SECONDS = 120  # one-second slots kept for the autoscaler's windows
WEB = "web"  # the router serves web dynos only: its figures are the web type's

# window -> (span in seconds, step in seconds)
WINDOWS: dict[str, tuple[int, int]] = {
    "1h": (3600, MINUTE),
    "6h": (6 * 3600, MINUTE),
    "24h": (24 * 3600, MINUTE),
    "7d": (7 * 24 * 3600, TEN_MINUTES),
}
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def parse_window(window: str) -> tuple[int, int]:
    if window not in WINDOWS:
        raise UserError(f"Unknown window {window!r}: use one of {', '.join(WINDOWS)}.")
    return WINDOWS[window]


@dataclass
class Period:
    """One app's process type over a minute, or ten: sums, so that periods add up."""

    requests: dict[str, int] = field(default_factory=dict)  # status class -> count
    service: latency.Histogram = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # H code -> count
    samples: int = 0  # memory and load samples (one per dyno every 20 s)
    rss_mb_sum: float = 0.0
    rss_mb_max: float = 0.0
    swap_mb_sum: float = 0.0
    load_sum: float = 0.0
    load_max: float = 0.0
    quota_mb: int | None = None

    def add(self, other: Period) -> None:
        _add_counts(self.requests, other.requests)
        latency.merge(self.service, other.service)
        _add_counts(self.errors, other.errors)
        self.samples += other.samples
        self.rss_mb_sum += other.rss_mb_sum
        self.rss_mb_max = max(self.rss_mb_max, other.rss_mb_max)
        self.swap_mb_sum += other.swap_mb_sum
        self.load_sum += other.load_sum
        self.load_max = max(self.load_max, other.load_max)
        if other.quota_mb is not None:
            self.quota_mb = other.quota_mb

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "service": latency.to_json(self.service),
            "errors": self.errors,
            "samples": self.samples,
            "rss_mb_sum": self.rss_mb_sum,
            "rss_mb_max": self.rss_mb_max,
            "swap_mb_sum": self.swap_mb_sum,
            "load_sum": self.load_sum,
            "load_max": self.load_max,
            "quota_mb": self.quota_mb,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Period:
        return cls(
            requests={str(k): int(v) for k, v in data.get("requests", {}).items()},
            service=latency.from_json(data.get("service")),
            errors={str(k): int(v) for k, v in data.get("errors", {}).items()},
            samples=int(data.get("samples", 0)),
            rss_mb_sum=float(data.get("rss_mb_sum", 0.0)),
            rss_mb_max=float(data.get("rss_mb_max", 0.0)),
            swap_mb_sum=float(data.get("swap_mb_sum", 0.0)),
            load_sum=float(data.get("load_sum", 0.0)),
            load_max=float(data.get("load_max", 0.0)),
            quota_mb=data.get("quota_mb"),
        )


def _add_counts(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


@dataclass
class RequestTotals:
    """One app's cumulative router figures (router/metrics.py's ``AppMetrics.to_json``)."""

    statuses: dict[int, int] = field(default_factory=dict)
    service: latency.Histogram = field(default_factory=dict)
    queue: latency.Histogram = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    arrived: int = 0
    answered: int = 0
    in_flight: int = 0  # not cumulative: the requests the router holds for the app now

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestTotals:
        return cls(
            statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()},
            service=latency.from_json(data.get("service")),
            queue=latency.from_json(data.get("queue")),
            errors={str(k): int(v) for k, v in data.get("errors", {}).items()},
            arrived=int(data.get("arrived", 0)),
            answered=int(data.get("answered", 0)),
            in_flight=int(data.get("in_flight", 0)),
        )

    def since(self, before: RequestTotals) -> RequestTotals:
        """What was counted after ``before`` (a count that went down started again)."""
        return RequestTotals(
            _count_difference(self.statuses, before.statuses),
            latency.difference(self.service, before.service),
            latency.difference(self.queue, before.queue),
            _count_difference(self.errors, before.errors),
            _one_difference(self.arrived, before.arrived),
            _one_difference(self.answered, before.answered),
            self.in_flight,
        )

    @property
    def empty(self) -> bool:
        return not (self.statuses or self.errors or self.arrived or self.answered)


def _one_difference(now: int, before: int) -> int:
    return now - before if now >= before else now


def _count_difference(now: Mapping[K, int], before: Mapping[K, int]) -> dict[K, int]:
    delta: dict[K, int] = {}
    for key, count in now.items():
        change = _one_difference(count, before.get(key, 0))
        if change:
            delta[key] = change
    return delta


@dataclass(frozen=True)
class WebWindow:
    """The router's view of an app's web dynos over the last ``seconds`` (the web
    autoscaler's sample, core/autoscaling.py's ``WebSample``)."""

    seconds: int
    p95_ms: float | None  # service time; None without requests
    queue_p95_ms: float | None  # head read -> sent to a dyno
    arrivals: float  # requests per second that reached the router
    answered: float  # requests per second the dynos answered
    failed: float = 0.0  # requests per second the router answered with an H code
    in_flight: int = 0  # requests the router holds for the app at the last reading
    busy: int = 0  # the fewest in flight at any reading from the window's start to its end


@dataclass(frozen=True)
class UsageSample:
    """One dyno's memory and load, as the manager samples it (manager/usage.py)."""

    app: str  # the app's name
    type: str
    rss_mb: float
    swap_mb: float
    load: float  # runnable CPU over the sampling interval (Heroku's "dyno load")
    quota_mb: int


class Recorder:
    """The open minute of every app and type, and each app's last two minutes of one-second
    slots. Keyed by app name (the router's), turned into app ids when stored."""

    def __init__(self) -> None:
        self._last: dict[str, RequestTotals] = {}
        self._open: dict[tuple[str, str], Period] = {}
        self._minute: int | None = None  # the open minute's start (epoch seconds)
        self._ring: dict[str, deque[tuple[int, RequestTotals]]] = {}
        self._read: int | None = None  # the second of the last reading

    def requests(self, now: float, totals: Mapping[str, RequestTotals]) -> None:
        """A reading of the router's cumulative figures at ``now`` (epoch seconds)."""
        self._open_minute(now)
        second = self._read = int(now)
        for app, total in totals.items():
            before = self._last.get(app)
            self._last[app] = total
            delta = total if before is None else total.since(before)
            if delta.empty:
                continue
            ring = self._ring.get(app)
            if ring is None:
                ring = self._ring[app] = deque()
            ring.append((second, delta))
            while ring and ring[0][0] <= second - RING_SECONDS:
                ring.popleft()
            period = self._period(app, WEB)
            for status, count in delta.statuses.items():
                key = f"{status // 100}xx"
                if key in STATUS_CLASSES:
                    period.requests[key] = period.requests.get(key, 0) + count
            latency.merge(period.service, delta.service)
            _add_counts(period.errors, delta.errors)

    def usage(self, now: float, samples: Iterable[UsageSample]) -> None:
        self._open_minute(now)
        for sample in samples:
            period = self._period(sample.app, sample.type)
            period.samples += 1
            period.rss_mb_sum += sample.rss_mb
            period.rss_mb_max = max(period.rss_mb_max, sample.rss_mb)
            period.swap_mb_sum += sample.swap_mb
            period.load_sum += sample.load
            period.load_max = max(period.load_max, sample.load)
            period.quota_mb = sample.quota_mb

    def forget(self, app: str) -> None:
        self._last.pop(app, None)
        self._ring.pop(app, None)
        for key in [k for k in self._open if k[0] == app]:
            del self._open[key]

    def due(self, now: float) -> list[tuple[str, str, int, Period]]:
        """The periods of a minute that is over by ``now``: (app, type, minute, period)."""
        if self._minute is None or int(now) // MINUTE * MINUTE == self._minute:
            return []
        return self.flush()

    def flush(self) -> list[tuple[str, str, int, Period]]:
        """Every open period, whether its minute is over or not (the server stops)."""
        minute = self._minute
        if minute is None:
            return []
        periods = [(app, type_, minute, p) for (app, type_), p in self._open.items()]
        self._open = {}
        self._minute = None
        return periods

    def open_period(self, app: str, type_: str) -> tuple[int, Period] | None:
        """The open minute of the app's type (its start and what it holds so far)."""
        period = self._open.get((app, type_))
        if period is None or self._minute is None:
            return None
        return self._minute, period

    def window(self, app: str, now: float, seconds: int) -> WebWindow:
        """The last ``seconds`` (at most ``RING_SECONDS``) of the app's web requests, up to
        the last reading: a window of 2 s asked for just before this second's reading must
        not count one second's requests over two (the web autoscaler's rates)."""
        service: latency.Histogram = {}
        queue: latency.Histogram = {}
        arrived = answered = failed = 0
        end = int(now)
        if self._read is not None and 0 <= end - self._read <= 1:
            end = self._read
        since = end - seconds
        last = self._last.get(app)
        in_flight = 0 if last is None else last.in_flight
        # No reading at the window's start (nothing happened in that second, or none was
        # taken): none is known to have been in flight then.
        busy = in_flight if any(second == since for second, _ in self._ring.get(app, ())) else 0
        for second, delta in self._ring.get(app, ()):
            if since <= second <= end:  # the reading that opens the window, for ``busy``
                busy = min(busy, delta.in_flight)
            if since < second <= end:
                latency.merge(service, delta.service)
                latency.merge(queue, delta.queue)
                arrived += delta.arrived
                answered += delta.answered
                failed += sum(delta.errors.values())
        return WebWindow(
            seconds,
            latency.percentile(service, 0.95),
            latency.percentile(queue, 0.95),
            arrived / seconds,
            answered / seconds,
            failed / seconds,
            in_flight,
            busy,
        )

    def _open_minute(self, now: float) -> None:
        if self._minute is None:
            self._minute = int(now) // MINUTE * MINUTE

    def _period(self, app: str, type_: str) -> Period:
        period = self._open.get((app, type_))
        if period is None:
            period = self._open[(app, type_)] = Period()
        return period


def rollup(minutes: Iterable[tuple[int, Period]]) -> dict[int, Period]:
    """One-minute periods summed into ten-minute ones, by their start."""
    periods: dict[int, Period] = {}
    for at, period in minutes:
        start = at // TEN_MINUTES * TEN_MINUTES
        into = periods.get(start)
        if into is None:
            into = periods[start] = Period()
        into.add(period)
    return periods


def steps(now: float, window: str) -> list[int]:
    """The starts of the window's steps, oldest first, the open one last."""
    span, step = parse_window(window)
    last = int(now) // step * step
    return list(range(last - span + step, last + step, step))


def series(
    periods: Mapping[int, Period], at: list[int]
) -> tuple[dict[str, list[Any]], dict[str, list[int | None]], int | None]:
    """The API's columns over the steps ``at``: (series, router errors by code, quota)."""
    columns: dict[str, list[Any]] = {
        "at": at,
        **{
            name: []
            for name in (
                "response_time_p50_ms",
                "response_time_p95_ms",
                "response_time_p99_ms",
                *(f"requests_{c}" for c in STATUS_CLASSES),
                "memory_rss_mb_mean",
                "memory_rss_mb_max",
                "memory_swap_mb_mean",
                "load_mean",
                "load_max",
            )
        },
    }
    codes = sorted({code for p in periods.values() for code in p.errors})
    errors: dict[str, list[int | None]] = {code: [] for code in codes}
    quota: int | None = None
    for start in at:
        period = periods.get(start)
        if period is None:
            for name, column in columns.items():
                if name != "at":
                    column.append(None)
            for column in errors.values():
                column.append(None)
            continue
        for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            value = latency.percentile(period.service, q)
            columns[f"response_time_{name}_ms"].append(None if value is None else round(value, 1))
        has_requests = bool(period.requests) or bool(period.errors)
        for status_class in STATUS_CLASSES:
            count = period.requests.get(status_class, 0)
            columns[f"requests_{status_class}"].append(count if has_requests else None)
        n = period.samples
        columns["memory_rss_mb_mean"].append(_mean(period.rss_mb_sum, n))
        columns["memory_rss_mb_max"].append(round(period.rss_mb_max, 2) if n else None)
        columns["memory_swap_mb_mean"].append(_mean(period.swap_mb_sum, n))
        columns["load_mean"].append(_mean(period.load_sum, n))
        columns["load_max"].append(round(period.load_max, 2) if n else None)
        for code, column in errors.items():
            column.append(period.errors.get(code, 0) if has_requests else None)
        if period.quota_mb is not None:
            quota = period.quota_mb
    return columns, errors, quota


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 2) if n else None
