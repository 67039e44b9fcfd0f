"""The metrics of issue 16: collected in the server, kept in the store, read by the API and
by the web autoscaler.

``Metrics`` takes three feeds and keeps them in core/metrics.py's ``Recorder``:

- the router's cumulative figures, summed over every router process (router/metrics.py),
  read once a second from the source server.py gives (``attach_router``): the router pays
  for counting only, never for a message per request;
- the manager's samples of each dyno's memory and load (``usage``, ManagerSettings.on_usage);
- the app's log lines, for the events (core/metric_events.py), through ``LogHub.watch``.

Each minute that is over is written to the store (one transaction for every app), the
ten-minute periods rolled up and what is too old dropped; ``close`` writes the open minute,
so a restart loses at most the seconds the server was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dynos.core.metric_events import (
    MetricEvent,
    classify,
    event_message,
    formation_sizes,
    scale_or_size,
)
from dynos.core.metrics import (
    MINUTE,
    RING_SECONDS,
    WEB,
    Period,
    Recorder,
    RequestTotals,
    UsageSample,
    WebWindow,
    parse_window,
    rollup,
    series,
    steps,
)
from dynos.errors import DynosError, NotFound, UserError
from dynos.logs.hub import LogHub
from dynos.logs.logline import LogLine
from dynos.store.database import Database
from dynos.store.models import App
from dynos.store.store import Store

log = logging.getLogger(__name__)

READ_EVERY = 1.0  # seconds between readings of the router's figures
PROCESS_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,29}")

RouterSource = Callable[[], Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class MetricsReport:
    """What ``GET /apps/{app}/metrics`` answers (api/metrics.py shapes it)."""

    app: str
    process_type: str
    window: str
    step_seconds: int
    series: dict[str, list[Any]]
    router_errors: dict[str, list[int | None]]
    memory_quota_mb: int | None
    events: list[MetricEvent]


class Metrics:
    def __init__(self, store: Store, logs: LogHub, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._recorder = Recorder()
        self._router: RouterSource | None = None
        self._events: list[tuple[str, MetricEvent]] = []  # by app name, not stored yet
        self._sizes: dict[str, dict[str, str]] = {}  # app -> sizes of its last "Scaled to"
        self._written: asyncio.Event | None = None
        logs.watch(self._line)

    # ---- the feeds ----------------------------------------------------------------------------

    def attach_router(self, source: RouterSource) -> None:
        """``source()``: every app's cumulative router figures (``AppMetrics.to_json``)."""
        self._router = source

    def usage(self, samples: list[UsageSample]) -> None:
        self._recorder.usage(self._clock(), samples)

    def _line(self, app: str, line: LogLine) -> None:
        kind = classify(line.source, line.dyno, line.message)
        if kind is None:
            return
        if kind == "scale":
            kind = scale_or_size(self._sizes.get(app), line.message)
            self._sizes[app] = {**self._sizes.get(app, {}), **formation_sizes(line.message)}
        message = event_message(line.source, line.dyno, line.message)
        self._events.append((app, MetricEvent(line.at.timestamp(), kind, message)))

    def read_router(self) -> None:
        """Take the router's figures now (the loop does it every second)."""
        if self._router is None:
            return
        totals = {app: RequestTotals.from_json(data) for app, data in self._router().items()}
        self._recorder.requests(self._clock(), totals)

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self, every: float = READ_EVERY) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                self.read_router()
                await self.write(self._recorder.due(self._clock()))
            except DynosError as exc:  # the store is busy or gone: the next turn tries again
                log.error("metrics: %s", exc)

    async def close(self) -> None:
        """Write the open minute and the events (the server stops)."""
        self.read_router()
        await self.write(self._recorder.flush())

    async def write(self, periods: list[tuple[str, str, int, Period]]) -> None:
        events, self._events = self._events, []
        if not periods and not events:
            return
        now = self._clock()

        def store(db: Database) -> None:
            ids: dict[str, str] = {}
            for name in {p[0] for p in periods} | {e[0] for e in events}:
                with contextlib.suppress(NotFound):  # destroyed meanwhile: nothing to keep
                    ids[name] = db.get_app(name).id
            db.add_periods((ids[a], t, at, p) for a, t, at, p in periods if a in ids)
            db.add_events((ids[a], e) for a, e in events if a in ids)
            db.roll_up(now)

        await self._store.transaction(store)
        if self._written is not None:
            self._written.set()

    def forget(self, app: str) -> None:
        """The app was destroyed or renamed: what is kept in memory under its name goes."""
        self._recorder.forget(app)
        self._sizes.pop(app, None)

    # ---- reading ------------------------------------------------------------------------------

    def web_window(self, app: str, seconds: int) -> WebWindow:
        """The router's view of the app's web dynos over the last ``seconds`` (up to
        ``RING_SECONDS``, at one-second granularity): p95 service and queue times, requests
        arrived and answered per second. For the web autoscaler; reads no store."""
        if not 1 <= seconds <= RING_SECONDS:
            raise ValueError(f"a window of 1 to {RING_SECONDS} s")
        return self._recorder.window(app, self._clock(), seconds)

    async def report(self, app: App, process_type: str, window: str) -> MetricsReport:
        _span, step = parse_window(window)
        if not PROCESS_TYPE.fullmatch(process_type):
            raise UserError(
                f"{process_type!r} is not a process type: use a Procfile name such as web."
            )
        now = self._clock()
        at = steps(now, window)

        def read(db: Database) -> tuple[dict[str, int], dict[int, Period], list[MetricEvent]]:
            types = {f.type: f.size.memory_mb for f in db.formation(app.id)}
            periods = db.periods(app.id, process_type, step, at[0], at[-1] + step)
            if step != MINUTE:  # the open ten minutes are not rolled up yet: their minutes
                minutes = db.periods(app.id, process_type, MINUTE, at[-1], at[-1] + step)
                periods.update(rollup(minutes.items()))
            return types, periods, db.metric_events(app.id, at[0])

        types, periods, events = await self._store.call(read)
        if process_type not in types and process_type != WEB and not periods:
            known = ", ".join(sorted({*types, WEB}))
            raise UserError(
                f"App {app.name} has no process type {process_type!r}: its types are {known}."
            )
        # The open minute is in memory only.
        open_period = self._recorder.open_period(app.name, process_type)
        if open_period is not None:
            periods.setdefault(open_period[0] // step * step, Period()).add(open_period[1])
        columns, errors, quota = series(periods, at)
        if quota is None:  # no sample in the window: the type's size says it
            quota = types.get(process_type)
        return MetricsReport(
            app.name,
            process_type,
            window,
            step,
            columns,
            errors,
            quota,
            [*events, *(e for a, e in self._events if a == app.name and e.at >= at[0])],
        )
