"""The dyno manager: the only component that starts and stops dynos.

It reads the desired state from the store, asks the pure planner what to do, and carries the
actions out through the backend. It wakes on every change of desired state (``wake()``), on
every event from the backend, and when a crashed dyno's back-off ends. It also keeps the
router's table in step with which web dynos are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynos.backends.base import Backend, DynoEvents, DynoSpec
from dynos.core.reconcile import (
    DesiredApp,
    DesiredProcess,
    StartDyno,
    StopDyno,
    next_deadline,
    plan_actions,
)
from dynos.core.restart_policy import RestartPolicy
from dynos.core.sizes import find_size
from dynos.core.states import DynoState
from dynos.errors import DynosError, NotFound
from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.manager.records import DynoRecord
from dynos.router.routing_table import Backend as RouteBackend
from dynos.router.routing_table import RoutingTable
from dynos.store.store import Store

log = logging.getLogger(__name__)

IDLE_TICK = 5.0  # seconds between reconciles when nothing happens (a safety net)


@dataclass(frozen=True)
class ManagerSettings:
    slugs_dir: Path
    stop_grace: float = 30.0
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)


class DynoManager:
    def __init__(
        self,
        store: Store,
        backend_factory: Callable[[DynoEvents], Backend],
        logs: LogHub,
        routes: RoutingTable,
        settings: ManagerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.backend = backend_factory(self)
        self._logs = logs
        self._routes = routes
        self._settings = settings
        self._clock = clock
        self._records: dict[tuple[str, str], DynoRecord] = {}
        self._by_key: dict[str, DynoRecord] = {}
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()  # set each time a dyno is forgotten
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._starts = 0

    # -- what the API asks --------------------------------------------------------------------

    def wake(self) -> None:
        """Desired state changed: reconcile soon."""
        self._wakeup.set()

    def dynos(self, app_id: str) -> list[DynoRecord]:
        """The app's dynos, by type then number."""
        found = [r for (a, _), r in self._records.items() if a == app_id]
        return sorted(found, key=lambda r: (r.type != "web", r.type, r.number))

    def find_dyno(self, app_id: str, name_or_id: str) -> DynoRecord:
        for record in self.dynos(app_id):
            if name_or_id in (record.name, record.id):
                return record
        raise NotFound(f"Couldn't find dyno {name_or_id}. Run 'dynos ps' to list the dynos.")

    def request_restart(self, app_id: str, target: str | None = None) -> list[DynoRecord]:
        """Mark the app's dynos (all, one process type, or one dyno) for a restart.

        Raises NotFound when ``target`` names neither a running dyno nor a process type.
        """
        chosen = [
            r for r in self.dynos(app_id) if target is None or target in (r.name, r.type, r.id)
        ]
        if target is not None and not chosen:
            raise NotFound(
                f"No dyno or process type {target!r} is running. Run 'dynos ps' to see them."
            )
        for record in chosen:
            record.restart_requested = True
        self.wake()
        return chosen

    async def wait_app_stopped(self, app_id: str) -> None:
        """Reconcile now and return once none of the app's dynos is left."""
        self.wake()
        while any(a == app_id for a, _ in self._records):
            self._stopped.clear()
            await self._stopped.wait()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until :meth:`close` is called."""
        while not self._closing:
            self._wakeup.clear()
            try:
                await self.reconcile()
            except DynosError as exc:  # a broken app must not stop the others
                log.error("reconcile failed: %s", exc.message)
            deadline = next_deadline([r.snapshot() for r in self._records.values()])
            timeout = IDLE_TICK
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def reconcile(self) -> None:
        desired = self._desired()
        snapshot = [r.snapshot() for r in self._records.values()]
        for action in plan_actions(desired, snapshot, self._clock()):
            if isinstance(action, StopDyno):
                self._stop(self._records[(action.app_id, action.name)])
            else:
                await self._start(action)
        self.publish_routes()

    def _desired(self) -> list[DesiredApp]:
        desired = []
        for app in self._store.list_apps():
            release = self._store.current_release(app.id)
            if release is None or release.slug_id is None:
                continue
            processes = tuple(
                DesiredProcess(f.type, f.quantity, f.size, release.processes[f.type])
                for f in self._store.formation(app.id)
                if f.type in release.processes
            )
            desired.append(DesiredApp(app.id, release.version, processes))
        return desired

    async def _start(self, action: StartDyno) -> None:
        app = self._store.get_app(action.app_id)
        release = self._store.current_release(app.id)
        assert release is not None and release.slug_id is not None
        record = self._records.get((app.id, action.name))
        if record is None:
            record = DynoRecord(
                app.id,
                app.name,
                action.type,
                action.number,
                release.version,
                release.id,
                action.size,
                action.command,
            )
            self._records[(app.id, action.name)] = record
        else:  # a crashed dyno, restarted by the policy
            record.move_to(DynoState.STARTING)
            record.restart_at = None
        self._starts += 1
        record.key = f"{app.id}/{record.name}/{self._starts}"
        record.started_at = self._clock()
        record.port = self.backend.allocate_port() if record.type == "web" else None
        self._by_key[record.key] = record
        slug = self._settings.slugs_dir / release.slug_id
        spec = DynoSpec(
            key=record.key,
            app_name=app.name,
            name=record.name,
            command=record.command,
            cwd=slug,
            env=dyno_environment(release.config, slug, record.name, record.port),
            port=record.port,
            size=find_size(record.size),
        )
        self._platform_log(record, f"Starting process with command `{record.command}`")
        try:
            await self.backend.start(spec)
        except DynosError as exc:
            self._platform_log(record, exc.message)
            self.dyno_exited(record.key, 1)

    def _stop(self, record: DynoRecord) -> None:
        record.stopping = True
        if record.key is None:  # crashed and not running: nothing to signal
            self._forget(record)
            return
        self._platform_log(record, "Stopping all processes with SIGTERM")
        self._spawn(self._stop_process(record.key, record))

    async def _stop_process(self, key: str, record: DynoRecord) -> None:
        killed = await self.backend.stop(key, self._settings.stop_grace)
        if killed:
            grace = f"{self._settings.stop_grace:g}"
            self._platform_log(
                record,
                f"Error R12 (Exit timeout) -> At least one process failed to exit within "
                f"{grace} seconds of SIGTERM",
            )

    def _forget(self, record: DynoRecord) -> None:
        self._records.pop((record.app_id, record.name), None)
        self._stopped.set()
        self.wake()

    # -- backend events ------------------------------------------------------------------------

    def dyno_output(self, key: str, line: str) -> None:
        record = self._by_key.get(key)
        if record is not None:
            self._logs.emit(record.app_name, "app", record.name, line)

    def dyno_up(self, key: str) -> None:
        record = self._by_key.get(key)
        if record is None or record.stopping or record.state is not DynoState.STARTING:
            return
        self._change_state(record, DynoState.UP)
        self.publish_routes()

    def dyno_boot_timeout(self, key: str) -> None:
        record = self._by_key.get(key)
        if record is None or record.stopping:
            return
        self._platform_log(
            record, "Error R10 (Boot timeout) -> Web process failed to bind to $PORT in time"
        )
        self._platform_log(record, "Stopping process with SIGKILL")
        self._spawn(self._kill(key))

    async def _kill(self, key: str) -> None:
        await self.backend.stop(key, 0)

    def dyno_exited(self, key: str, status: int) -> None:
        record = self._by_key.pop(key, None)
        if record is None:
            return
        record.key = None
        self._platform_log(record, f"Process exited with status {status}")
        if record.stopping:
            self._change_state(record, DynoState.DOWN)
            self._forget(record)
        else:
            now = self._clock()
            policy = self._settings.restart_policy
            record.crashes = policy.crash_count(record.crashes, record.started_at, now)
            record.restart_at = now + policy.delay(record.crashes)
            self._change_state(record, DynoState.CRASHED)
        self.publish_routes()
        self.wake()

    # -- helpers -------------------------------------------------------------------------------

    def _change_state(self, record: DynoRecord, state: DynoState) -> None:
        old = record.move_to(state)
        self._platform_log(record, f"State changed from {old} to {state}")

    def _platform_log(self, record: DynoRecord, message: str) -> None:
        self._logs.emit(record.app_name, PLATFORM, record.name, message)

    def publish_routes(self) -> None:
        """Push every app's up web dynos to the router's table."""
        names = {app.id: app.name for app in self._store.list_apps()}
        for app_id, name in names.items():
            web = [r for r in self.dynos(app_id) if r.type == "web"]
            backends = [
                RouteBackend(r.name, "127.0.0.1", r.port)
                for r in web
                if r.state is DynoState.UP and not r.stopping and r.port is not None
            ]
            crashed = bool(web) and all(r.state is DynoState.CRASHED for r in web)
            self._routes.set_app(name, backends, crashed=crashed)
        self._routes.retain(set(names.values()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every dyno (SIGTERM, SIGKILL after the grace period) and wait for them."""
        self._closing = True
        self._wakeup.set()
        for record in list(self._records.values()):
            if not record.stopping:
                self._stop(record)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def dyno_environment(
    config: dict[str, str], slug: Path, name: str, port: int | None
) -> dict[str, str]:
    """A dyno's whole environment: the app's config vars and the platform's basics.

    Nothing of the server's own environment leaks in (its token, its ``DYNOS_*`` settings).
    The Python that runs dynos is on PATH, after the release's own virtualenv if it has one.
    """
    path = [str(slug / ".venv" / "bin"), os.path.dirname(sys.executable)]
    path += ["/usr/local/bin", "/usr/bin", "/bin"]
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(slug),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",  # as Heroku's Python buildpack sets: logs line by line
        **config,
        "DYNO": name,
    }
    if port is not None:
        env["PORT"] = str(port)
    return env
