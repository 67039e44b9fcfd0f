"""A steady load through the router, for the preboot tests and bench/preboot.py: requests at
a fixed rate from one thread, each counted as served (a 2xx) or failed (anything else: a
status, a connection error, a timeout), with the slowest answer kept."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    slowest: float = 0.0  # seconds
    latencies: list[float] = field(default_factory=list)  # seconds, of every request
    failures: Counter[str] = field(default_factory=Counter)  # what went wrong, how often
    bodies: Counter[str] = field(default_factory=Counter)  # the served answers' bodies

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile latency in seconds (0 without requests)."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


class SteadyLoad:
    """``GET path`` to ``app`` through the router on ``port``, ``rate`` times a second, from
    :meth:`start` until :meth:`stop`. Keep-alive, as a browser or a client library does."""

    def __init__(self, port: int, app: str, rate: float = 100.0, path: str = "/") -> None:
        self._url = f"http://127.0.0.1:{port}{path}"
        self._host = f"{app}.localhost"
        self._interval = 1.0 / rate
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.result = LoadResult()

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stopping.set()
        self._thread.join(timeout=60)
        return self.result

    def _run(self) -> None:
        result = self.result
        with httpx.Client(headers={"Host": self._host}, timeout=30) as client:
            next_at = time.monotonic()
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    response = client.get(self._url)
                    if response.is_success:
                        result.bodies[response.text] += 1
                    else:
                        result.failed += 1
                        result.failures[f"status {response.status_code}"] += 1
                except httpx.HTTPError as exc:
                    result.failed += 1
                    result.failures[type(exc).__name__] += 1
                result.sent += 1
                took = time.monotonic() - started
                result.latencies.append(took)
                result.slowest = max(result.slowest, took)
                next_at += self._interval
                self._stopping.wait(max(0.0, next_at - time.monotonic()))
