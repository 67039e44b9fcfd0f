"""Periodic checks on running dynos: memory (R14/R15), scratch space, idling, daily cycling,
and the samples of memory and load (manager/usage.py).

The decisions are pure (``core.memory``, ``core.scratch``, ``core.idling``); this loop
samples the backend and the router's table, and asks the manager to act (through
:class:`DynoControl`; idling through :class:`~dynos.manager.idling.Idler`). It never starts or
stops a process itself, and never reads the store: the desired state is the manager's last
reading of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dynos.core.memory import assess_memory
from dynos.core.scratch import assess_scratch
from dynos.core.states import DynoState
from dynos.manager.control import DynoControl
from dynos.manager.idling import Idler
from dynos.manager.usage import UsageSampler
from dynos.router.routing_table import RoutingTable


class DynoWatch:
    def __init__(
        self,
        manager: DynoControl,
        routes: RoutingTable,
        clock: Callable[[], float],
    ) -> None:
        self._manager = manager
        self._idler = Idler(manager, routes)
        self._usage = UsageSampler(manager)
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
        self._usage.check(now)

    def _check_memory(self, now: float) -> None:
        backend = self._manager.backend
        for record in self._manager.all_dynos():
            if record.key is None or record.stopping or record.memory_killed:
                continue
            used = backend.memory_used(record.key)
            if used is None:
                continue
            quota = record.size.memory_mb
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
        self._idler.check(now)

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
