"""The router's Prometheus metrics, per app: requests by status, latency, requests in flight.

The hot path only adds to plain ints and floats (``AppMetrics.observe``); prometheus-client
turns them into metric families when ``/metrics`` is scraped (``RouterMetrics.collect``), so a
request pays neither a label lookup nor a lock. Everything runs on the event loop's thread:
scrape from a coroutine on that loop (``prometheus_client.generate_latest(registry)``).

    dynos_router_requests_total{app,status}           counter
    dynos_router_request_duration_seconds{app}        histogram: head read -> response sent
    dynos_router_requests_in_flight{app}              gauge
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AppMetrics:
    __slots__ = ("buckets", "in_flight", "statuses", "sum")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.in_flight = 0

    def observe(self, status: int, seconds: float) -> None:
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "buckets": self.buckets,
            "sum": self.sum,
            "in_flight": self.in_flight,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppMetrics:
        metrics = cls()
        metrics.statuses = {int(k): int(v) for k, v in data["statuses"].items()}
        metrics.buckets = [int(n) for n in data["buckets"]]
        metrics.sum = float(data["sum"])
        metrics.in_flight = int(data["in_flight"])
        return metrics

    def add(self, other: AppMetrics) -> None:
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.sum += other.sum
        self.in_flight += other.in_flight


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
