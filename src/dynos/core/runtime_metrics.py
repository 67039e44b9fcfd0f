"""Heroku's log-runtime-metrics lines and the dyno load behind them (pure).

Every ``RUNTIME_METRICS_EVERY`` seconds the manager samples each running dyno (manager/
usage.py): its memory, and the CPU seconds its processes used. The *load* over an interval
is those seconds' rate, the average number of CPUs its runnable processes kept busy (the
kernel's per-cgroup run queue is not exposed, and a busy dyno is what Heroku's "dyno load"
shows); ``load_avg_1m``/``5m``/``15m`` are exponentially damped averages of it, as the
kernel's load averages are of the run queue. An app with the ``log-runtime-metrics``
feature gets two ``dynos[web.1]`` lines (Heroku's ``heroku[web.1]``) per dyno and sample:

    source=web.1 dyno=heroku.<app id>.<dyno id> sample#load_avg_1m=0.00 ...
    source=web.1 dyno=heroku.<app id>.<dyno id> sample#memory_total=21.00MB ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RUNTIME_METRICS_EVERY = 20.0  # seconds between samples (Heroku's "about every 20 s")
MB = 1024 * 1024
_PERIODS = (60.0, 300.0, 900.0)


@dataclass(frozen=True)
class LoadAverages:
    one: float = 0.0
    five: float = 0.0
    fifteen: float = 0.0

    def updated(self, load: float, seconds: float) -> LoadAverages:
        """The averages after ``seconds`` more at ``load``."""
        one, five, fifteen = (
            average * decay + load * (1 - decay)
            for average, decay in zip(
                (self.one, self.five, self.fifteen),
                (math.exp(-seconds / period) for period in _PERIODS),
                strict=True,
            )
        )
        return LoadAverages(one, five, fifteen)


def load(cpu_before: float | None, cpu_now: float, seconds: float) -> float:
    """The load over an interval of ``seconds`` from the CPU seconds used at its ends (a
    count that went down lost an exited process's share: nothing is known, 0)."""
    if cpu_before is None or seconds <= 0 or cpu_now < cpu_before:
        return 0.0
    return (cpu_now - cpu_before) / seconds


@dataclass(frozen=True)
class RuntimeSample:
    source: str  # the dyno's name, "web.1"
    dyno: str  # "heroku.<app id>.<dyno id>"
    rss: int  # bytes
    swap: int
    cache: int
    pgpgin: int  # pages
    pgpgout: int
    quota_mb: int
    loads: LoadAverages


def runtime_lines(sample: RuntimeSample) -> tuple[str, str]:
    """The load line and the memory line, Heroku's order."""
    head = f"source={sample.source} dyno={sample.dyno}"
    loads = sample.loads
    load_line = (
        f"{head} sample#load_avg_1m={loads.one:.2f} sample#load_avg_5m={loads.five:.2f}"
        f" sample#load_avg_15m={loads.fifteen:.2f}"
    )
    memory_line = (
        f"{head} sample#memory_total={(sample.rss + sample.swap) / MB:.2f}MB"
        f" sample#memory_rss={sample.rss / MB:.2f}MB sample#memory_cache={sample.cache / MB:.2f}MB"
        f" sample#memory_swap={sample.swap / MB:.2f}MB sample#memory_pgpgin={sample.pgpgin}pages"
        f" sample#memory_pgpgout={sample.pgpgout}pages sample#memory_quota={sample.quota_mb:.2f}MB"
    )
    return load_line, memory_line
