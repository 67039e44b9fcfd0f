"""Periodic checks on running dynos: memory (R14/R15), scratch space, idling, daily cycling.

The decisions are pure (``core.memory``, ``core.scratch``, ``core.idling``); this loop
samples the backend and the router's table, and asks the manager to act. It never starts or
stops a process itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from dynos.core.idling import idle_due, may_idle
from dynos.core.memory import assess_memory
from dynos.core.scratch import assess_scratch
from dynos.core.sizes import find_size
from dynos.core.states import DynoState
from dynos.router.routing_table import RoutingTable
from dynos.store.store import Store

if TYPE_CHECKING:
    from dynos.manager.manager import DynoManager


class DynoWatch:
    def __init__(
        self,
        manager: DynoManager,
        store: Store,
        routes: RoutingTable,
        clock: Callable[[], float],
    ) -> None:
        self._manager = manager
        self._store = store
        self._routes = routes
        self._clock = clock

    async def run(self, every: float) -> None:
        while True:
            self.check()
            await asyncio.sleep(every)

    def check(self) -> None:
        now = self._clock()
        self._check_memory(now)
        self._check_scratch()
        self._check_idling(now)
        self._check_cycling(now)

    def _check_memory(self, now: float) -> None:
        backend = self._manager.backend
        for record in self._manager.all_dynos():
            if record.key is None or record.stopping or record.memory_killed:
                continue
            used = backend.memory_used(record.key)
            if used is None:
                continue
            quota = find_size(record.size).memory_mb
            verdict = assess_memory(used, quota, record.memory_reported_at, now)
            record.memory_reported_at = verdict.reported_at
            for line in verdict.lines:
                self._manager.platform_log(record, line)
            if verdict.kill:
                record.memory_killed = True
                backend.kill(record.key)

    def _check_scratch(self) -> None:
        backend = self._manager.backend
        for record in self._manager.all_dynos():
            if record.key is None or record.stopping:
                continue
            usage = backend.scratch_usage(record.key)
            if usage is None:
                continue
            verdict = assess_scratch(*usage, record.scratch_full)
            record.scratch_full = verdict.full
            if verdict.line is not None:
                self._manager.platform_log(record, verdict.line)

    def _check_idling(self, now: float) -> None:
        settings = self._store.all_app_settings()
        default = self._manager.settings.idle_after
        for app in self._store.list_apps():
            web = [f for f in self._store.formation(app.id) if f.type == "web"]
            dynos = [d for d in self._manager.dynos(app.id) if d.type == "web"]
            if not web or not may_idle(web[0].quantity, find_size(web[0].size)):
                if any(d.state is DynoState.IDLE for d in dynos):
                    self._manager.wake_app(app.name)  # scaled out or up: no longer sleeps
                continue
            if len(dynos) != 1 or dynos[0].state is not DynoState.UP or dynos[0].stopping:
                continue
            record = dynos[0]
            idle_after = settings.get(app.id, {}).get("idle_after", default)
            last = max(record.started_at, self._routes.last_request_at(app.name) or 0.0)
            if idle_due(last, now, float(idle_after)):  # type: ignore[arg-type]
                self._manager.put_to_sleep(record)

    def _check_cycling(self, now: float) -> None:
        cycle_after = self._manager.settings.cycle_after
        if not cycle_after:
            return
        for record in self._manager.all_dynos():
            if (
                record.state is DynoState.UP
                and not record.one_off  # one-off dynos run their course, never cycled
                and not record.stopping
                and not record.restart_requested
                and now - record.started_at >= cycle_after
            ):
                self._manager.platform_log(record, "Cycling")
                record.restart_requested = True  # the planner rolls them one at a time
                self._manager.wake()
