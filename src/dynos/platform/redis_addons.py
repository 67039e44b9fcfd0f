"""The Redis add-ons' servers while the dynos server runs: each started before the dynos, one
that dies logged and started again with the dyno restart back-off, all stopped after the
dynos.

An add-on keeps its port across restarts, since its app's ``REDIS_URL`` names it. When that
port cannot be kept, the server moves to another, with a new password, and the app is
released with the new URL at once (no release phase: the move is the platform's), as Heroku
releases an app whose Redis moved:

- another process took the port meanwhile (redis-server says "Address already in use"). It
  may have been sent the password (by the start's own check, by the app's dynos): hence the
  new one;
- the port is outside the range the server must use (``ports``: a swarm's guards open only
  that range), for a home that ran another backend before.

The server runs on its new port at once; its record and its app's release follow as soon
as no release command of the app runs (until then the app's dynos keep the old URL). The
new port is none that another add-on has recorded (the allocator, ``Addons``'s, skips them:
all start at once, at the server's start, and one not yet listening would look free).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from dynos.backends.cgroups import Limits
from dynos.backends.isolation import AppUsers
from dynos.backends.sandbox import Sandboxes
from dynos.core.redis_plans import RedisPlan, cgroup_size, plan_for
from dynos.core.release_phase import Trigger
from dynos.core.restart_policy import RestartPolicy
from dynos.errors import Conflict, DynosError, NotFound, PlatformError, PortTaken, Unavailable
from dynos.logs.logline import APP, PLATFORM
from dynos.platform.context import Services, announce_release
from dynos.platform.redis_server import (
    RedisProcess,
    find_redis_server,
    redis_url,
    start_redis,
    stop_redis,
)
from dynos.platform.releases import release_config
from dynos.store.database import Database
from dynos.store.models import Addon, App, Release

log = logging.getLogger(__name__)
RECORD_RETRY = 2.0  # seconds between tries to record a move while its app's release waits

CONFIG_VAR = "REDIS_URL"
ATTACHMENT = "REDIS"  # Heroku's attachment name: the config var without _URL


@dataclass
class _Running:
    """An add-on's process and the task that restarts it when it dies."""

    addon: Addon  # as last recorded: its port is the one its app's REDIS_URL names
    redis: RedisProcess | None = None
    supervisor: asyncio.Task[None] | None = None
    stopping: bool = False
    started_at: float = field(default_factory=time.monotonic)
    moving_to: int | None = None  # a move's port, held, that its server did not start on
    recording: asyncio.Task[None] | None = None  # a move's record and release (_record_move)


class RedisServers:
    """The running Redis add-ons, by add-on id. Data lives under ``data_dir/<add-on name>``."""

    def __init__(
        self,
        platform: Services,
        data_dir: Path,
        policy: RestartPolicy,
        sandboxes: Sandboxes,
        allocate_port: Callable[[], int],
        *,
        users: AppUsers | None = None,
        also_bind: str | None = None,
        ports: range | None = None,
    ) -> None:
        """``allocate_port``: a free port (of ``ports``, where given); ``also_bind``: an
        address listened on besides loopback (where container dynos reach it)."""
        self._platform = platform
        self._store = platform.store
        self._data_dir = data_dir
        self._policy = policy
        self._sandboxes = sandboxes
        self._allocate_port = allocate_port
        self._users = users  # None: add-on servers run as the server's user
        self._also_bind = also_bind
        self._ports = ports
        self._running: dict[str, _Running] = {}

    async def start(self, addons: list[Addon]) -> None:
        """At server start: every recorded add-on; one that fails is logged and retried in
        the background."""
        await asyncio.gather(*(self._boot(addon) for addon in addons))

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(addon_id) for addon_id in list(self._running)))

    async def launch(
        self, data: Path, port: int, password: str, plan: RedisPlan, app: str, name: str
    ) -> RedisProcess:
        """Start one add-on's redis-server on ``port``; return once it answers. Raises
        PlatformError (PortTaken when another process has the port)."""
        program = find_redis_server()

        def forward(line: str) -> None:
            self._platform.logs.emit(app, APP, name, line)

        size = cgroup_size(plan)
        try:
            user = self._users.for_addon(name) if self._users is not None else None
            sandbox = self._sandboxes.prepare(
                f"addon-{name}",
                limits=Limits.of(size),
                user=user,
                scratch_bytes=self._sandboxes.scratch_for(size),
                visible=(data,),
            )
        except OSError as exc:
            raise PlatformError(f"Could not set up limits for {name}: {exc}") from exc
        bind = self._also_bind
        return await start_redis(program, data, port, password, plan, forward, sandbox, bind)

    def watch(self, addon: Addon, redis: RedisProcess) -> None:
        """Keep ``addon`` running from now on; ``redis``: its process, just started."""
        self._keep(_Running(addon, redis))

    def running_of(self, app_id: str) -> list[Addon]:
        return [r.addon for r in self._running.values() if r.addon.app_id == app_id]

    async def stop(self, addon_id: str) -> None:
        running = self._running.pop(addon_id, None)
        if running is None:
            return
        running.stopping = True
        if running.redis is not None:
            await stop_redis(running.redis)
        for task in (running.supervisor, running.recording):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- starts and restarts ----------------------------------------------------------------

    async def _boot(self, addon: Addon) -> None:
        running = _Running(addon)
        try:
            running.redis = await self._start_recorded(running)
        except DynosError as exc:
            await self._log(addon, PLATFORM, f"{addon.name} did not start: {exc.message}")
        self._keep(running)

    def _keep(self, running: _Running) -> None:
        self._running[running.addon.id] = running
        running.supervisor = asyncio.create_task(self._supervise(running))

    async def _start_recorded(self, running: _Running) -> RedisProcess:
        """Start the add-on on its recorded port, or move it (the module's docstring)."""
        addon = running.addon
        app = await self._store.get_app(addon.app_id)
        data, plan = self._data_dir / addon.name, plan_for(addon.plan)
        launch = partial(self.launch, data, plan=plan, app=app.name)
        if self._ports is None or addon.port in self._ports:
            try:
                return await launch(port=addon.port, password=addon.password, name=addon.name)
            except PortTaken:
                why = f"port {addon.port} is another process's now"
        else:
            why = f"port {addon.port} is outside ports {self._ports.start}-{self._ports.stop - 1}"
        # A port a move took before and could not keep is tried again: it is held already.
        running.moving_to = running.moving_to or self._allocate_port()
        port, password = running.moving_to, secrets.token_hex(32)
        try:
            redis = await launch(port=port, password=password, name=addon.name)
        except PortTaken:
            running.moving_to = None  # taken too, since: another next time
            raise
        running.moving_to = None
        running.addon = replace(addon, port=port, password=password)
        log.warning("%s moved to port %s: %s", addon.name, port, why)
        await self._log(addon, PLATFORM, f"{addon.name} moved to port {port}: {why}")
        if not await self._record_move(running.addon):
            running.recording = asyncio.create_task(self._record_move_later(running))
        return redis

    async def _record_move(self, addon: Addon) -> bool:
        """Record the moved add-on's port and password and release its app with the new URL
        (at once: no release phase). False while a release command of the app runs (a
        release meanwhile is refused); True once done, or when there is nothing to record
        (the add-on or its app destroyed meanwhile: no REDIS_URL comes back)."""
        description = f"Update {ATTACHMENT} by heroku-redis"

        def move(db: Database) -> tuple[App, Release | None] | None:
            if not db.set_addon_port(addon.id, addon.port, addon.password):
                return None
            app = db.get_app(addon.app_id)
            changes = {CONFIG_VAR: redis_url(addon.port, addon.password)}
            return app, release_config(db, app, changes, description, Trigger.ADDON_MOVED).release

        try:
            moved = await self._store.transaction(move)
        except (Conflict, Unavailable) as exc:
            log.info("%s: its app's release waits: %s", addon.name, exc.message)
            return False
        except NotFound:
            return True
        if moved is not None and moved[1] is not None:
            announce_release(self._platform, moved[0], description, moved[1])
        return True

    async def _record_move_later(self, running: _Running) -> None:
        """Until the move is recorded, the add-on goes, or it moves again: meanwhile its
        app's dynos use the old URL."""
        addon = running.addon
        while not running.stopping and running.addon is addon:
            await asyncio.sleep(RECORD_RETRY)
            if await self._record_move(addon):
                return

    async def _supervise(self, running: _Running) -> None:
        """Start the add-on again whenever it dies, with the dyno restart back-off."""
        crashes = 0
        while not running.stopping:
            if running.redis is not None:
                redis = running.redis
                returncode = await redis.process.wait()
                status = 128 - returncode if returncode < 0 else returncode  # as a dyno's
                if running.stopping:
                    return
                running.redis = None
                oom_killed = await redis.sandbox.finish()  # what it left, and its cgroup
                await self._exited(running.addon, status, oom_killed)
            now = time.monotonic()
            crashes = self._policy.crash_count(crashes, running.started_at, now)
            delay = self._policy.delay(crashes)
            name = running.addon.name
            await self._log(running.addon, PLATFORM, f"Restarting {name} in {delay:g} seconds")
            await asyncio.sleep(delay)
            if running.stopping:
                return
            running.started_at = time.monotonic()
            try:
                running.redis = await self._start_recorded(running)
            except DynosError as exc:
                await self._log(running.addon, PLATFORM, f"{name} did not start: {exc.message}")
                continue
            await self._log(running.addon, PLATFORM, f"{name} is up again")

    async def _exited(self, addon: Addon, status: int, oom_killed: bool) -> None:
        """Log an exit that nobody asked for (and why, when its memory cap was the cause)."""
        await self._log(addon, PLATFORM, f"{addon.name} exited with status {status}")
        log.warning("add-on %s exited with status %s", addon.name, status)
        if oom_killed:
            cap = plan_for(addon.plan).memory_cap_bytes // (1024 * 1024)
            await self._log(
                addon,
                PLATFORM,
                f"{addon.name} was killed for using more than its plan's memory cap ({cap} MB)",
            )

    async def _log(self, addon: Addon, source: str, message: str) -> None:
        # Its app may be gone meanwhile, or the store out of reach: the line is then lost.
        with contextlib.suppress(NotFound, Unavailable):
            app = await self._store.get_app(addon.app_id)
            self._platform.logs.emit(app.name, source, addon.name, message)
