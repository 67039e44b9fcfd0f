"""The dyno manager: the only component that starts and stops dynos.

It reads the desired state from the store, asks the pure planner what to do, and carries the
actions out through the backend. It wakes on every change of desired state (``wake()``), on
every event from the backend, and when a crashed dyno's back-off ends.

It owns the dyno records and the reconcile loop; the helpers act through
:class:`~dynos.manager.control.DynoControl`, which the manager implements: events.py,
one_off.py, publisher.py, idling.py, watch.py, health.py, preboot.py (docs/architecture.md).
``close`` waits for a reconcile under way, so a dyno it was starting stops with the rest.

Each reconcile reads the whole desired state in one store call (off the event loop) and keeps
it as ``view``: what runs between reconciles (backend events, the router waking an idle app,
the watch) decides from that copy and never waits on the database. A store that cannot be
read (another process locks it) fails that reconcile only; the dynos keep running as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from dynos.backends.attach import Terminal
from dynos.backends.base import Backend, DynoEvents, DynoSpec
from dynos.core.healthchecks import NO_CHECKS
from dynos.core.reconcile import StartDyno, StopDyno, next_deadline, plan_actions
from dynos.core.sizes import DynoSize
from dynos.core.states import DynoState
from dynos.errors import DynosError, NotFound
from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.manager.desired import desired_apps
from dynos.manager.environment import dyno_environment, health_path
from dynos.manager.events import DynoEventSink
from dynos.manager.health import HealthChecker, SlugChecks
from dynos.manager.idling import Idler
from dynos.manager.one_off import OneOffRunner
from dynos.manager.preboot import Preboots
from dynos.manager.publisher import RoutePublisher
from dynos.manager.records import DynoRecord, start_failure
from dynos.manager.settings import ManagerSettings
from dynos.manager.watch import DynoWatch
from dynos.router.routing_table import RoutingTable
from dynos.store.models import AppState, Release
from dynos.store.store import Store

__all__ = ["DynoManager", "ManagerSettings", "dyno_environment"]

log = logging.getLogger(__name__)

IDLE_TICK = 5.0  # seconds between reconciles when nothing happens (a safety net)


class DynoManager:
    """Owns the dyno records and runs the reconcile loop; implements
    :class:`~dynos.manager.control.DynoControl` for its helpers: the backend's event sink,
    the one-off runner, the route publisher, idling and the watch."""

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
        self._events = DynoEventSink(self, logs, clock)
        self.backend = backend_factory(self._events)
        self._logs = logs
        self._routes = routes
        self._settings = settings
        self._clock = clock
        self._records: dict[tuple[str, str], DynoRecord] = {}
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()  # set each time a dyno is forgotten
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._reconciling = asyncio.Lock()
        self._starts = 0
        self._view: dict[str, AppState] = {}  # by app id, as the last reconcile read it
        self._publisher = RoutePublisher(routes)
        self._one_offs = OneOffRunner(self, store, clock)
        self._idler = Idler(self, routes)
        self._health = HealthChecker(self, self._spawn, routes.domain)
        self._checks_of = SlugChecks(settings.slugs_dir)  # each slug's app.json checks
        self._preboots = Preboots(self, self._checks_of, clock)

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
        dyno leaves one-offs alone. NotFound when ``target`` names no dyno or process type."""
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
                self.stop(record)
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
        """Run ``command`` as a one-off dyno: see :meth:`OneOffRunner.run`."""
        return await self._one_offs.run(app_id, command, size=size, env=env, attach=attach, tty=tty)

    async def attach(self, app_id: str, name: str, token: str) -> Terminal:
        """Connect a client to an attached one-off dyno: see :meth:`OneOffRunner.attach`."""
        return await self._one_offs.attach(app_id, name, token)

    def hang_up(self, record: DynoRecord) -> None:
        """The client of an attached one-off dyno went away: end the dyno."""
        self._one_offs.hang_up(record)

    async def run_release_command(
        self, app_id: str, release: Release, size: DynoSize
    ) -> tuple[DynoRecord, Terminal]:
        """Run a pending release's release command: see :meth:`OneOffRunner.run_release_command`."""
        return await self._one_offs.run_release_command(app_id, release, size)

    # -- the loop ----------------------------------------------------------------------------

    @property
    def settings(self) -> ManagerSettings:
        return self._settings

    def all_dynos(self) -> list[DynoRecord]:
        return list(self._records.values())

    @property
    def view(self) -> list[AppState]:
        """Every app's desired state, as the last reconcile (or :meth:`refresh`) read it."""
        return list(self._view.values())

    async def refresh(self) -> None:
        """Read the desired state now and push the router's table from it (a change that
        the router must follow at once: a request timeout, a custom domain), returning once
        every router process follows it."""
        await self._load()
        self.publish_routes()
        await self._publisher.wait_followers()

    async def _load(self) -> None:
        self._view = {state.app.id: state for state in await self._store.app_states()}

    async def run(self) -> None:
        """Reconcile, and watch the dynos, until :meth:`close` is called."""
        watch = DynoWatch(self, self._routes, self._clock)
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
            # A crashed dyno's restart, or an attached one-off's last moment for its client.
            deadlines = [next_deadline([r.snapshot() for r in self._records.values()])]
            deadlines.append(self._one_offs.attach_deadline())
            timeout = IDLE_TICK
            for deadline in (d for d in deadlines if d is not None):
                timeout = max(0.0, min(timeout, deadline - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def reconcile(self) -> None:
        async with self._reconciling:
            await self._reconcile()

    async def _reconcile(self) -> None:
        self._one_offs.expire_attachments()
        await self._load()
        desired = desired_apps(self._view.values())
        await self._preboots.tick(self._view, desired)
        # A preboot's retired dynos are its own: the planner sees the formation's dynos only.
        snapshot = [r.snapshot() for r in self._records.values() if r.retired_name is None]
        held, preboot = self._preboots.held(), self._preboots.preboot_types(self._view.values())
        for action in plan_actions(desired, snapshot, self._clock(), held=held, preboot=preboot):
            if isinstance(action, StopDyno):
                record = self._records[(action.app_id, action.name)]
                record.replaced = action.reason == "restart"
                self.stop(record)
            else:
                await self._start(action)
        self.publish_routes()

    async def _start(self, action: StartDyno) -> None:
        state = self._view.get(action.app_id)
        if self._closing or state is None or state.release is None or not state.release.slug_id:
            return  # the server stops, or the app was destroyed (or emptied) since planned
        app, release = state.app, state.release
        record = self._records.get((app.id, action.name))
        if record is None or record.state is DynoState.DOWN:  # new, or the successor of one
            record = DynoRecord(
                *(app.id, app.name, action.type, action.number),
                *(release.version, release.id, action.size, action.command),
            )
            self._records[(app.id, action.name)] = record
        else:  # a crashed dyno restarted by the policy, or an idle one woken
            record.move_to(DynoState.STARTING)
            record.restart_at = None
            record.release_version, record.release_id = release.version, release.id
            record.size, record.command = action.size, action.command
            record.memory_killed = False
        await self.launch(record, release)

    async def launch(
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
        state = self._view.get(record.app_id)
        record.health_path = health_path(state.settings if state else {}, record.type)
        record.checks = self._checks_of(release.slug_id) if record.type == "web" else NO_CHECKS
        self._events.track(record)
        slug = self._settings.slugs_dir / release.slug_id
        config = {**release.config, **(env or {})}
        spec = DynoSpec(
            key=record.key,
            app_name=record.app_name,
            name=record.name,
            command=record.command,
            cwd=slug,
            env=dyno_environment(
                config, slug, record.name, record.port, self._settings.python, record.size
            ),
            port=record.port,
            size=record.size,
            app_id=record.app_id,
            health_path=record.health_path,
            terminal=terminal,
            release=release.version,
        )
        self.platform_log(record, f"Starting process with command `{record.command}`")
        try:
            await self.backend.start(spec)
        except Exception as exc:  # even a bug's is this dyno's crash only: see start_failure
            self.platform_log(record, start_failure(record.key, exc))
            self._events.dyno_exited(record.key, 1)

    def stop(self, record: DynoRecord) -> None:
        record.stopping = True
        if record.key is None:  # crashed, idle or down, not running: nothing to signal
            if record.replaced and record.state is not DynoState.DOWN:
                self.change_state(record, DynoState.DOWN)  # kept for its successor
                record.stopping = record.replaced = False
                self.wake()
            else:
                self.forget(record)
            return
        self.platform_log(record, "Stopping all processes with SIGTERM")
        self._spawn(self._stop_process(record.key, record))

    async def _stop_process(self, key: str, record: DynoRecord) -> None:
        if record.type == "web":
            # Out of the rotation first (publish_routes skips stopping dynos), then let the
            # requests it is serving finish, bounded by the grace period: then SIGTERM.
            self.publish_routes()
            await self._publisher.drain(record.app_name, record.name, self._settings.stop_grace)
        grace = self._settings.stop_grace
        killed = await self.backend.stop(key, grace, replaced=record.replaced)
        if killed:
            self.platform_log(
                record,
                f"Error R12 (Exit timeout) -> At least one process failed to exit within "
                f"{grace:g} seconds of SIGTERM",
            )
            self.platform_log(record, "Stopping remaining processes with SIGKILL")

    def add(self, record: DynoRecord) -> None:
        self._records[(record.app_id, record.name)] = record

    def rename(self, record: DynoRecord, retired_name: str | None) -> None:
        self._records.pop((record.app_id, record.name), None)
        record.retired_name = retired_name
        self._records[(record.app_id, record.name)] = record

    def check_startup(self, record: DynoRecord) -> None:
        self._health.startup(record)

    def watch_liveness(self, record: DynoRecord) -> None:
        self._health.liveness(record)

    def forget(self, record: DynoRecord) -> None:
        self._records.pop((record.app_id, record.name), None)
        self._stopped.set()
        self.wake()

    # -- helpers -------------------------------------------------------------------------------

    def change_state(self, record: DynoRecord, state: DynoState) -> None:
        old = record.move_to(state)
        self.platform_log(record, f"State changed from {old} to {state}")

    def platform_log(self, record: DynoRecord, message: str) -> None:
        self._logs.emit(record.app_name, PLATFORM, record.name, message)

    def publish_routes(self) -> None:
        """Push every app's routable web dynos to the router's table (manager/publisher.py)."""
        self._publisher.publish(
            self._view.values(), lambda app_id: [r for r in self.dynos(app_id) if r.type == "web"]
        )

    # -- idling (manager/idling.py) --------------------------------------------------------------

    def wake_app(self, app_name: str) -> None:
        """The router got a request for an app whose web dyno sleeps: start it now."""
        self._idler.wake_app(app_name)

    def start_again(self, action: StartDyno) -> None:
        self._spawn(self._start_again(action))

    async def _start_again(self, action: StartDyno) -> None:
        await self._start(action)
        self.publish_routes()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.add(task := asyncio.create_task(coro))
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every dyno (SIGTERM, SIGKILL after the grace period) and wait for them."""
        self._closing = True
        self._wakeup.set()
        async with self._reconciling:  # its starts done (later ones bail out), all seen here
            for record in list(self._records.values()):
                record.replaced = False  # nothing is started again
                if not record.stopping:
                    self.stop(record)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
