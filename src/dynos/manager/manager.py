"""The dyno manager: the only component that starts and stops dynos.

It reads the desired state from the store, asks the pure planner what to do, and carries the
actions out through the backend. It wakes on every change of desired state (``wake()``), on
every event from the backend, and when a crashed dyno's back-off ends. It also keeps the
router's table in step with which web dynos are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynos.backends.attach import Terminal
from dynos.backends.base import Backend, DynoEvents, DynoSpec
from dynos.core.app_settings import DEFAULT_REQUEST_TIMEOUT
from dynos.core.reconcile import (
    DesiredApp,
    DesiredProcess,
    StartDyno,
    StopDyno,
    next_deadline,
    plan_actions,
)
from dynos.core.restart_policy import RestartPolicy
from dynos.core.sizes import DEFAULT_SIZE, find_size
from dynos.core.states import DynoState
from dynos.errors import Conflict, DynosError, NotFound, Unauthorized, UserError
from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.manager.one_off import (
    ATTACH_TIMEOUT,
    Attachment,
    expand_command,
    pick_run_number,
    window_size,
)
from dynos.manager.records import DynoRecord
from dynos.manager.watch import DynoWatch
from dynos.router.routing_table import Backend as RouteBackend
from dynos.router.routing_table import RoutingTable
from dynos.store.models import Release
from dynos.store.store import Store

log = logging.getLogger(__name__)

IDLE_TICK = 5.0  # seconds between reconciles when nothing happens (a safety net)


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
        routes.on_wake = self.wake_app

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

        A one-off dyno is never restarted: naming it (or ``run``) stops it; restarting every
        dyno leaves one-offs alone. Raises NotFound when ``target`` names neither a running
        dyno nor a process type.
        """
        chosen = [
            r
            for r in self.dynos(app_id)
            if (target is None and not r.one_off) or target in (r.name, r.type, r.id)
        ]
        if target is not None and not chosen:
            raise NotFound(
                f"No dyno or process type {target!r} is running. Run 'dynos ps' to see them."
            )
        for record in chosen:
            if not record.one_off:
                record.restart_requested = True
            elif not record.stopping:
                self._stop(record)
        self.wake()
        return chosen

    async def wait_app_stopped(self, app_id: str) -> None:
        """Reconcile now and return once none of the app's dynos is left."""
        self.wake()
        while any(a == app_id for a, _ in self._records):
            self._stopped.clear()
            await self._stopped.wait()

    async def release_app(self, app_id: str) -> None:
        """The destroyed app's dynos are all gone (wait_app_stopped): free what the backend
        held for it (its user, as root)."""
        await self.backend.release_app(app_id)

    # -- one-off dynos (manager/one_off.py) ---------------------------------------------------

    async def run_one_off(
        self,
        app_id: str,
        command: str,
        *,
        size: str | None = None,
        env: dict[str, str] | None = None,
        attach: bool = False,
        tty: bool = True,
    ) -> DynoRecord:
        """Run ``command`` as a one-off dyno ``run.NNNN`` of the app's current release.

        Detached, its process starts now and its output goes to the logs. Attached, it waits
        for a client to :meth:`attach` (a pty when ``tty``, else pipes). ``env`` is added to
        the config vars. Raises UserError when the app has nothing deployed, or for an
        unknown size; nothing is created then.
        """
        app = self._store.get_app(app_id)
        release = self._store.current_release(app.id)
        if release is None or release.slug_id is None:
            raise UserError(
                f"{app.name} has no release to run a command in: deploy it first "
                f"(dynos deploy -a {app.name})."
            )
        if not command.strip():
            raise UserError("No command to run: pass one, e.g. dynos run bash.")
        dyno_size = find_size(size) if size else DEFAULT_SIZE
        taken = [r.number for r in self.dynos(app.id) if r.one_off]
        record = DynoRecord(
            app_id=app.id,
            app_name=app.name,
            type="run",
            number=pick_run_number(taken),
            release_version=release.version,
            release_id=release.id,
            size=dyno_size.name,
            command=expand_command(command, release.processes),
            one_off=True,
        )
        self._records[(app.id, record.name)] = record
        if attach:
            deadline = self._clock() + ATTACH_TIMEOUT
            record.attachment = Attachment(tty, dict(env or {}), deadline)
        else:
            await self._launch(record, release, env=env)
        return record

    async def attach(self, app_id: str, name: str, token: str) -> Terminal:
        """Connect a client to the attached one-off dyno ``name``: start its process with
        the client's terminal, which it returns.

        Raises NotFound for an unknown dyno, Unauthorized for a wrong token, Conflict when a
        client is attached already.
        """
        record = self.find_dyno(app_id, name)
        attachment = record.attachment
        if attachment is None or not hmac.compare_digest(attachment.token, token):
            raise Unauthorized(f"Wrong attach token for {name}: use the dyno's attach_url.")
        if attachment.terminal is not None:
            raise Conflict(f"{name} has a client attached already.")
        cols, rows = window_size(attachment.env)
        attachment.terminal = Terminal(tty=attachment.tty, cols=cols, rows=rows)
        release = self._store.get_release(app_id, record.release_id)
        await self._launch(record, release, env=attachment.env, terminal=attachment.terminal)
        return attachment.terminal

    def hang_up(self, record: DynoRecord) -> None:
        """The client of an attached one-off dyno went away: end the dyno."""
        if record.stopping or record.attachment is None or record.attachment.terminal is None:
            return
        self.platform_log(record, "Client connection closed. Sending SIGHUP to all processes")
        record.attachment.terminal.hang_up()
        self._stop(record)

    def _expire_attachments(self) -> None:
        now = self._clock()
        for record in list(self._records.values()):
            attachment = record.attachment
            if attachment and not attachment.terminal and attachment.deadline <= now:
                self.platform_log(record, "Error R13 (Attach error) -> Failed to attach to process")
                self._change_state(record, DynoState.DOWN)
                self._forget(record)

    # -- the loop ----------------------------------------------------------------------------

    @property
    def settings(self) -> ManagerSettings:
        return self._settings

    def all_dynos(self) -> list[DynoRecord]:
        return list(self._records.values())

    async def run(self) -> None:
        """Reconcile, and watch the dynos, until :meth:`close` is called."""
        watch = DynoWatch(self, self._store, self._routes, self._clock)
        watch_task = asyncio.create_task(watch.run(self._settings.watch_every))
        try:
            await self._reconcile_loop()
        finally:
            watch_task.cancel()

    async def _reconcile_loop(self) -> None:
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
        self._expire_attachments()
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
        else:  # a crashed dyno restarted by the policy, or an idle one woken
            record.move_to(DynoState.STARTING)
            record.restart_at = None
            record.release_version, record.release_id = release.version, release.id
            record.size, record.command = action.size, action.command
            record.memory_killed = False
        await self._launch(record, release)

    async def _launch(
        self,
        record: DynoRecord,
        release: Release,
        *,
        env: dict[str, str] | None = None,
        terminal: Terminal | None = None,
    ) -> None:
        """Start ``record``'s process from ``release``; a one-off dyno adds its ``env`` to the
        config vars, and an attached one its client's ``terminal``."""
        assert release.slug_id is not None
        self._starts += 1
        record.key = f"{record.app_id}/{record.name}/{self._starts}"
        record.started_at = self._clock()
        record.port = self.backend.allocate_port() if record.type == "web" else None
        record.health_path = _health_path(self._store.app_settings(record.app_id), record.type)
        self._by_key[record.key] = record
        slug = self._settings.slugs_dir / release.slug_id
        config = {**release.config, **(env or {})}
        spec = DynoSpec(
            key=record.key,
            app_name=record.app_name,
            name=record.name,
            command=record.command,
            cwd=slug,
            env=dyno_environment(config, slug, record.name, record.port, self._settings.python),
            port=record.port,
            size=find_size(record.size),
            app_id=record.app_id,
            health_path=record.health_path,
            terminal=terminal,
        )
        self.platform_log(record, f"Starting process with command `{record.command}`")
        try:
            await self.backend.start(spec)
        except DynosError as exc:
            self.platform_log(record, exc.message)
            self.dyno_exited(record.key, 1)

    def _stop(self, record: DynoRecord) -> None:
        record.stopping = True
        if record.key is None:  # crashed or idle, not running: nothing to signal
            self._forget(record)
            return
        self.platform_log(record, "Stopping all processes with SIGTERM")
        self._spawn(self._stop_process(record.key, record))

    async def _stop_process(self, key: str, record: DynoRecord) -> None:
        if record.type == "web":
            # Out of the rotation first (publish_routes skips stopping dynos), then let the
            # requests it is serving finish, bounded by the grace period: then SIGTERM.
            self.publish_routes()
            await self._routes.wait_drained(record.app_name, record.name, self._settings.stop_grace)
        killed = await self.backend.stop(key, self._settings.stop_grace)
        if killed:
            grace = f"{self._settings.stop_grace:g}"
            self.platform_log(
                record,
                f"Error R12 (Exit timeout) -> At least one process failed to exit within "
                f"{grace} seconds of SIGTERM",
            )
            self.platform_log(record, "Stopping remaining processes with SIGKILL")

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
        path = record.health_path
        failed = f"did not answer GET {path} with 2xx/3xx" if path else "failed to bind to $PORT"
        self.platform_log(
            record,
            f"Error R10 (Boot timeout) -> Web process {failed} within "
            f"{self._settings.boot_timeout:g} seconds of launch",
        )
        self.platform_log(record, "Stopping process with SIGKILL")
        self.backend.kill(key)

    def dyno_oom_killed(self, key: str) -> None:
        record = self._by_key.get(key)
        if record is not None and not record.memory_killed:
            record.memory_killed = True
            self.platform_log(record, "Error R15 (Memory quota vastly exceeded)")
            self.platform_log(record, "Stopping process with SIGKILL")

    def dyno_exited(self, key: str, status: int) -> None:
        record = self._by_key.pop(key, None)
        if record is None:
            return
        record.key = None
        self.platform_log(record, f"Process exited with status {status}")
        if record.one_off:  # done, never restarted; an attached client gets the status last
            self._change_state(record, DynoState.COMPLETE)
            if record.attachment is not None and record.attachment.terminal is not None:
                record.attachment.terminal.finish(status)
            self._forget(record)
        elif record.idling:
            record.idling = record.stopping = False
            record.state = DynoState.IDLE  # "State changed from up to down" was said on idling
        elif record.stopping:
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
        self.platform_log(record, f"State changed from {old} to {state}")

    def platform_log(self, record: DynoRecord, message: str) -> None:
        self._logs.emit(record.app_name, PLATFORM, record.name, message)

    def publish_routes(self) -> None:
        """Push every app's up web dynos to the router's table.

        An app whose web dynos are all starting, restarting or idle is marked ``idle``: the
        router holds its requests (waking it if needed) instead of failing them.
        """
        names = {app.id: app.name for app in self._store.list_apps()}
        settings = self._store.all_app_settings()
        for app_id, name in names.items():
            web = [r for r in self.dynos(app_id) if r.type == "web"]
            backends = [
                RouteBackend(r.name, "127.0.0.1", r.port)
                for r in web
                if r.state is DynoState.UP and not r.stopping and r.port is not None
            ]
            crashed = bool(web) and all(r.state is DynoState.CRASHED for r in web)
            coming = any(
                r.state in (DynoState.STARTING, DynoState.IDLE) or r.restart_requested or r.stopping
                for r in web
            )
            timeout = settings.get(app_id, {}).get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
            self._routes.set_app(
                name,
                backends,
                crashed=crashed and not coming,
                idle=not backends and coming,
                request_timeout=float(timeout),  # type: ignore[arg-type]
            )
        self._routes.retain(set(names.values()))

    # -- idling --------------------------------------------------------------------------------

    def put_to_sleep(self, record: DynoRecord) -> None:
        """Idle a lone web dyno: out of the rotation, stopped, shown as ``idle``."""
        self.platform_log(record, "Idling")
        self.platform_log(record, f"State changed from {record.state} to down")
        record.idling = True
        self._stop(record)

    def wake_app(self, app_name: str) -> None:
        """The router got a request for an app whose web dyno sleeps: start it now."""
        for record in self._records.values():
            if record.app_name == app_name and record.state is DynoState.IDLE:
                self.platform_log(record, "Unidling")
                release = self._store.current_release(record.app_id)
                if release is None:
                    return
                formation = {f.type: f for f in self._store.formation(record.app_id)}
                entry = formation.get(record.type)
                if entry is None or record.type not in release.processes:
                    return
                action = StartDyno(
                    record.app_id,
                    record.type,
                    record.number,
                    release.version,
                    entry.size,
                    release.processes[record.type],
                )
                self._spawn(self._wake(action))

    async def _wake(self, action: StartDyno) -> None:
        await self._start(action)
        self.publish_routes()

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
    config: dict[str, str],
    slug: Path,
    name: str,
    port: int | None,
    python: str = sys.executable,
) -> dict[str, str]:
    """A dyno's whole environment: the app's config vars and the platform's basics.

    Nothing of the server's own environment leaks in (its token, its ``DYNOS_*`` settings).
    The Python that runs dynos is on PATH, after the release's own virtualenv if it has one.
    """
    path = [str(slug / ".venv" / "bin"), os.path.dirname(python)]
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


def _health_path(settings: dict[str, object], type_: str) -> str | None:
    path = settings.get("health_check_path")
    return path if type_ == "web" and isinstance(path, str) else None
