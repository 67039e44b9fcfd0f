"""The dynos' memory and load, sampled every ``runtime_metrics_every`` seconds (20: Heroku's
log-runtime-metrics pace): handed to the metrics (``ManagerSettings.on_usage``), and, for an
app with the ``log-runtime-metrics`` feature, written to its log as Heroku's two lines per
dyno (core/runtime_metrics.py). The watch (manager/watch.py) calls ``check`` on its ticks."""

from __future__ import annotations

from dynos.core.features import LOG_RUNTIME_METRICS
from dynos.core.metrics import UsageSample
from dynos.core.runtime_metrics import MB, LoadAverages, RuntimeSample, load, runtime_lines
from dynos.core.states import DynoState
from dynos.manager.control import DynoControl


class UsageSampler:
    def __init__(self, manager: DynoControl) -> None:
        self._manager = manager
        self._sampled_at: float | None = None
        self._cpu: dict[str, tuple[float, float]] = {}  # dyno id -> (when, CPU seconds)
        self._loads: dict[str, LoadAverages] = {}  # dyno id -> its load averages

    def check(self, now: float) -> None:
        """Sample every running dyno if ``runtime_metrics_every`` passed since the last time."""
        every = self._manager.settings.runtime_metrics_every
        if self._sampled_at is not None and now - self._sampled_at < every:
            return
        self._sampled_at = now
        logged = {s.app.id for s in self._manager.view if LOG_RUNTIME_METRICS.name in s.features}
        backend = self._manager.backend
        samples: list[UsageSample] = []
        seen: set[str] = set()
        for record in self._manager.all_dynos():
            if record.key is None or record.state is not DynoState.UP:
                continue
            usage = backend.usage(record.key)
            if usage is None:
                continue
            seen.add(record.id)
            before = self._cpu.get(record.id)
            self._cpu[record.id] = (now, usage.cpu_seconds)
            if before is None:
                current, seconds = 0.0, every
            else:
                seconds = now - before[0]
                current = load(before[1], usage.cpu_seconds, seconds)
            loads = self._loads.get(record.id, LoadAverages()).updated(current, seconds)
            self._loads[record.id] = loads
            quota = record.size.memory_mb
            samples.append(
                UsageSample(
                    record.app_name, record.type, usage.rss / MB, usage.swap / MB, current, quota
                )
            )
            if record.app_id in logged:
                sample = RuntimeSample(
                    *(record.name, f"heroku.{record.app_id}.{record.id}"),
                    *(usage.rss, usage.swap, usage.cache, usage.pgpgin, usage.pgpgout),
                    quota,
                    loads,
                )
                for line in runtime_lines(sample):
                    self._manager.platform_log(record, line)
        for gone in set(self._cpu) - seen:
            del self._cpu[gone]
            self._loads.pop(gone, None)
        sink = self._manager.settings.on_usage
        if sink is not None and samples:
            sink(samples)
