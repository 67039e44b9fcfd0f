"""The manager's settings, read once at startup (server.py makes them from the command line)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dynos.core.metrics import UsageSample
from dynos.core.restart_policy import RestartPolicy
from dynos.core.runtime_metrics import RUNTIME_METRICS_EVERY


@dataclass(frozen=True)
class ManagerSettings:
    slugs_dir: Path
    stop_grace: float = 30.0
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    idle_after: float = 3600.0  # default for apps without their own idle_after setting
    cycle_after: float | None = None  # restart dynos older than this, one at a time
    watch_every: float = 0.5  # seconds between memory, idling and cycling checks
    boot_timeout: float = 60.0  # the backend enforces it; the manager's R10 line says it
    python: str = sys.executable  # the python3 on dynos' PATH
    # Seconds between samples of each dyno's memory and load (manager/usage.py), and who
    # takes them (the metrics, platform/metrics.py).
    runtime_metrics_every: float = RUNTIME_METRICS_EVERY
    on_usage: Callable[[list[UsageSample]], None] | None = None
