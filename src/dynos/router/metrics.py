"""The router's Prometheus metrics, per app: requests by status, latency, requests in flight.

The hot path only adds to plain ints and floats (``AppMetrics.observe``); prometheus-client
turns them into metric families when ``/metrics`` is scraped (``RouterMetrics.collect``), so a
request pays neither a label lookup nor a lock. Everything runs on the event loop's thread:
scrape from a coroutine on that loop (``prometheus_client.generate_latest(registry)``).

    dynos_router_requests_total{app,status}           counter
    dynos_router_request_duration_seconds{app}        histogram: head read -> response sent
    dynos_router_requests_in_flight{app}              gauge

Each app's figures also hold what the metrics of issue 16 need (platform/metrics.py reads
them once a second from ``total()``): the service times and queue times (head read -> sent
to a dyno) on core/latency.py's fixed-bucket histograms, the H codes counted, and the
requests that arrived and that a dyno answered. They are cumulative, like the counters, and
travel in the same ``stats`` message the router processes already send: no message per
request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from dynos.core import latency

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AppMetrics:
    __slots__ = (
        "answered",
        "arrived",
        "buckets",
        "errors",
        "in_flight",
        "queue",
        "service",
        "statuses",
        "sum",
    )

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.in_flight = 0
        self.arrived = 0  # requests routed to the app (counted when they start)
        self.answered = 0  # requests a dyno answered (no H code)
        # core/latency.py's buckets, a count per bucket (sparse only when shipped)
        self.service = [0] * latency.BUCKETS  # service= times (ms)
        self.queue = [0] * latency.BUCKETS  # head read -> sent to a dyno (ms)
        self.errors: dict[str, int] = {}  # H code -> requests

    def observe(self, status: int, seconds: float) -> None:
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def observe_dyno(self, service_ms: int, queue_ms: int, answered: bool) -> None:
        """A request a dyno took: its service time and how long it waited for one (ms)."""
        self.service[_bucket(service_ms)] += 1
        self.queue[_bucket(queue_ms)] += 1
        if answered:
            self.answered += 1

    def observe_error(self, code: str) -> None:
        errors = self.errors
        errors[code] = errors.get(code, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "buckets": self.buckets,
            "sum": self.sum,
            "in_flight": self.in_flight,
            "arrived": self.arrived,
            "answered": self.answered,
            "service": _sparse(self.service),
            "queue": _sparse(self.queue),
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppMetrics:
        metrics = cls()
        metrics.statuses = {int(k): int(v) for k, v in data["statuses"].items()}
        metrics.buckets = [int(n) for n in data["buckets"]]
        metrics.sum = float(data["sum"])
        metrics.in_flight = int(data["in_flight"])
        metrics.arrived = int(data.get("arrived", 0))
        metrics.answered = int(data.get("answered", 0))
        for index, count in latency.from_json(data.get("service")).items():
            metrics.service[index] = count
        for index, count in latency.from_json(data.get("queue")).items():
            metrics.queue[index] = count
        metrics.errors = {str(k): int(v) for k, v in data.get("errors", {}).items()}
        return metrics

    def add(self, other: AppMetrics) -> None:
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.sum += other.sum
        self.in_flight += other.in_flight
        self.arrived += other.arrived
        self.answered += other.answered
        self.service = [a + b for a, b in zip(self.service, other.service, strict=True)]
        self.queue = [a + b for a, b in zip(self.queue, other.queue, strict=True)]
        for code, count in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + count


_TOP: Final = (1 << 18) - 1  # latency.TOP, a compiled constant here


def _bucket(ms: int) -> int:
    """core/latency.py's ``bucket``, inlined: compiled, these are machine integer operations
    (tests/router/test_router_metrics.py checks they agree)."""
    if ms < 8:
        return ms if ms > 0 else 0
    if ms > _TOP:
        ms = _TOP
    bits = ms.bit_length()
    return (bits - 3) * 8 + ((ms >> (bits - 4)) & 7)


def _sparse(counts: list[int]) -> dict[str, int]:
    return {str(index): count for index, count in enumerate(counts) if count}


class RouterMetrics(Collector):
    def __init__(self) -> None:
        self.apps: dict[str, AppMetrics] = {}
        # The latest figures of each other router process (router/processes.py), by process,
        # and what processes that exited had counted: counters never go down.
        self.elsewhere: dict[int, dict[str, AppMetrics]] = {}
        self.retired: dict[str, AppMetrics] = {}

    def retire(self, process: int) -> None:
        """Router process ``process`` exited: its requests stay counted, none is in flight."""
        for name, metrics in self.elsewhere.pop(process, {}).items():
            metrics.in_flight = 0
            self.retired.setdefault(name, AppMetrics()).add(metrics)

    def total(self) -> dict[str, AppMetrics]:
        """Per app, this process's figures plus the other router processes' latest."""
        if not self.elsewhere and not self.retired:
            return self.apps
        total: dict[str, AppMetrics] = {}
        for apps in (self.apps, self.retired, *self.elsewhere.values()):
            for name, metrics in apps.items():
                total.setdefault(name, AppMetrics()).add(metrics)
        return total

    def app(self, name: str) -> AppMetrics:
        metrics = self.apps.get(name)
        if metrics is None:
            metrics = self.apps[name] = AppMetrics()
        return metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "dynos_router_requests",
            "Requests answered by the router, by app and status.",
            labels=["app", "status"],
        )
        latency = HistogramMetricFamily(
            "dynos_router_request_duration_seconds",
            "Time from the request head read to the response written (or the error).",
            labels=["app"],
        )
        in_flight = GaugeMetricFamily(
            "dynos_router_requests_in_flight",
            "Requests the router is handling (tunnels included), by app.",
            labels=["app"],
        )
        for name, metrics in sorted(self.total().items()):
            for status, count in sorted(metrics.statuses.items()):
                requests.add_metric([name, str(status)], count)
            cumulative = []
            total = 0
            for bound, count in zip((*BUCKETS, float("inf")), metrics.buckets, strict=True):
                total += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
            latency.add_metric([name], cumulative, metrics.sum)
            in_flight.add_metric([name], metrics.in_flight)
        yield requests
        yield latency
        yield in_flight


def metrics_registry(metrics: RouterMetrics) -> CollectorRegistry:
    """A registry holding only the router's metrics."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    return registry
