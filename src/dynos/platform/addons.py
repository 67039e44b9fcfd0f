"""Add-ons: backing services the platform runs for an app, Heroku's model for them.

Two kinds: ``redis``, a managed redis-server (:mod:`dynos.platform.redis_server`), in one of
Heroku's plan sizes (:mod:`dynos.core.redis_plans`; ``mini`` unless one is named); and
``heroku-postgresql``, a database of the server's one Postgres cluster
(:mod:`dynos.platform.postgres`, whose docstring tells its life; this module records it and
releases the app as for Redis). Creating one starts the service and waits until it
answers; only then is it recorded and the app released with its config var
(``REDIS_URL``), so that no release ever points at a service that did not come up.
Destroying one releases the app without the var, stops the service and deletes its data.

Add-ons run while the server runs: they start before the dynos do, stop after them, and one
that dies is logged and started again, with the same back-off as a crashing dyno
(:mod:`dynos.platform.redis_addons` runs the Redis servers, and moves one whose port is
taken).

Each add-on's server runs in a sandbox of the server's (:mod:`dynos.backends.sandbox`), named
``addon-<name>``. As root that is a system user of its own (``dyno-addon-...``), not its
app's, so that the app's dynos can neither signal it nor read its files, a cgroup of its own
capped at its plan's memory cap, and a private scratch; without root, a reaper.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from dynos.backends.isolation import AppUsers
from dynos.backends.ports import DynoPorts
from dynos.backends.sandbox import Sandboxes
from dynos.core import postgres_plans
from dynos.core.redis_plans import SERVICE, plan_for
from dynos.core.release_phase import Trigger
from dynos.core.restart_policy import RestartPolicy
from dynos.errors import Conflict, DynosError, NotFound, PlatformError, UserError
from dynos.platform.context import Services, announce_release
from dynos.platform.postgres import PostgresDatabases
from dynos.platform.postgres_server import Cluster
from dynos.platform.redis_addons import ATTACHMENT, CONFIG_VAR, RedisServers
from dynos.platform.redis_server import find_redis_server, redis_url, stop_redis
from dynos.platform.releases import release_config
from dynos.store.database import Database
from dynos.store.models import Addon, App, Release

log = logging.getLogger(__name__)

ADDON_NAME = re.compile(r"[a-z][a-z0-9-]{1,28}[a-z0-9]")
_WORDS = ("solid", "curved", "clear", "silent", "rugged", "tidy", "vivid", "deep", "round")


class Addons:
    """The managed add-ons of every app. Data lives under ``data_dir/<add-on name>``."""

    def __init__(
        self,
        platform: Services,
        data_dir: Path,
        policy: RestartPolicy | None = None,
        *,
        users: AppUsers | None = None,
        sandboxes: Sandboxes | None = None,
        postgres_dir: Path | None = None,
        storage_cap_mb: int | None = None,
        gateway: tuple[str, str] | None = None,
        ports: range | None = None,
    ) -> None:
        """``postgres_dir``: the Postgres cluster's home (``<home>/postgres`` by default);
        ``storage_cap_mb``: a cap on every database below its plan's; ``gateway``: where
        container dynos reach add-ons (an address also listened on, a network Postgres lets
        in); ``ports``: where their ports must be (a swarm's guards open them), else anywhere."""
        self._platform = platform
        self._store = platform.store
        self._data_dir = data_dir
        policy = policy or RestartPolicy()
        sandboxes = sandboxes or Sandboxes()
        backend_ports = platform.manager.backend.allocate_port
        self._free_port = DynoPorts(ports, strict=True).allocate if ports else backend_ports
        self._recorded: set[int] = set()  # the add-ons' ports at the server's start
        self._redis = RedisServers(
            platform,
            data_dir,
            policy,
            sandboxes,
            self._allocate_port,
            users=users,
            also_bind=gateway[0] if gateway else None,
            ports=ports,
        )
        root, allocate = postgres_dir or data_dir.parent / "postgres", self._allocate_port
        cluster = Cluster(root, sandboxes, users, allocate, gateway=gateway, ports=ports)
        self.postgres = PostgresDatabases(platform, cluster, policy, storage_cap_mb=storage_cap_mb)

    # -- what the API asks --------------------------------------------------------------------

    async def list(self, app: App | None = None) -> list[Addon]:
        return await self._store.list_addons(app.id if app else None)

    async def find(self, app: App, name_or_id: str) -> Addon:
        """The app's add-on by name, id, attachment (``REDIS``, ``DATABASE``), config var
        or service (``redis``, ``postgresql``) when that is unambiguous; NotFound otherwise."""
        addons = await self.list(app)
        wanted = name_or_id.lower()
        for addon in addons:
            if name_or_id in (addon.name, addon.id) or wanted in _attachment_names(addon):
                return addon
        loose = [a for a in addons if wanted in _service_names(a)]
        if len(loose) == 1:
            return loose[0]
        raise NotFound(
            f"Couldn't find add-on {name_or_id} on {app.name}. Run 'dynos addons' to list them."
        )

    async def create(self, app: App, plan: str, name: str | None = None) -> Addon:
        """Start a new add-on for ``app`` and release the app with its config var.

        Raises UserError for an unknown kind or plan or a malformed name, Conflict when the
        app has one already (or sets the var itself), PlatformError when redis-server is
        missing or does not start. On any error nothing is left: no record, no release, no
        process, no data.
        """
        if name is not None and not ADDON_NAME.fullmatch(name):
            raise UserError(
                f"Invalid add-on name {name!r}: use 3 to 30 lowercase letters, digits and "
                "dashes, starting with a letter and not ending with a dash."
            )
        if postgres_plans.is_postgres(plan):
            name = name or await self._new_name("postgresql")
            return await self.postgres.create(app, postgres_plans.plan_of(plan), name)
        chosen = plan_for(plan)
        find_redis_server()  # before anything: its install command, should it be missing
        await self._store.call(_check_free, app)
        name = name or await self._new_name(SERVICE)
        port = self._allocate_port()
        password = secrets.token_hex(32)
        data = self._data_dir / name
        try:
            redis = await self._redis.launch(data, port, password, chosen, app.name, name)
        except BaseException:
            shutil.rmtree(data, ignore_errors=True)
            raise
        description = f"Attach {ATTACHMENT} (@ref:{name})"

        def record(db: Database) -> tuple[Addon, Release]:
            _check_free(db, app)  # again: another request may have attached one meanwhile
            addon = db.create_addon(
                app.id,
                name,
                service=SERVICE,
                plan=f"{SERVICE}:{chosen.name}",
                config_var=CONFIG_VAR,
                port=port,
                password=password,
            )
            url = redis_url(port, password)
            return addon, _release_var(db, app, CONFIG_VAR, url, description)

        try:
            addon, release = await self._store.transaction(record)
        except BaseException:
            await stop_redis(redis)
            shutil.rmtree(data, ignore_errors=True)
            raise
        announce_release(self._platform, app, description, release)
        self._redis.watch(addon, redis)
        return addon

    async def destroy(self, app: App, addon: Addon) -> None:
        """Release the app without the add-on's config var, stop the service, delete its
        data."""
        attachment = postgres_plans.attachment_name(addon.config_var)
        description = f"Detach {attachment} (@ref:{addon.name})"

        def forget(db: Database) -> Release:
            db.delete_addon(addon.id)
            return _release_var(db, app, addon.config_var, None, description)

        release = await self._store.transaction(forget)
        announce_release(self._platform, app, description, release)
        if addon.service == postgres_plans.SERVICE:
            await self.postgres.deprovision(addon)
            return
        await self._redis.stop(addon.id)
        shutil.rmtree(self._data_dir / addon.name, ignore_errors=True)

    async def app_destroyed(self, app_id: str, addons: Sequence[Addon]) -> None:
        """The app is gone, its add-on records (``addons``) with it: stop its services,
        delete their data, drop its databases."""
        for running in self._redis.running_of(app_id):
            await self._redis.stop(running.id)
            shutil.rmtree(self._data_dir / running.name, ignore_errors=True)
        for addon in addons:
            if addon.service == postgres_plans.SERVICE:
                try:
                    await self.postgres.deprovision(addon)
                except DynosError as exc:
                    log.warning("could not drop the database of %s: %s", addon.name, exc.message)

    # -- server start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Start every recorded add-on (at server start, before any dyno); one that fails is
        logged and retried in the background."""
        addons = await self.list()
        self._recorded.update(addon.port for addon in addons)
        databases = [a for a in addons if a.service == postgres_plans.SERVICE]
        redis = [a for a in addons if a.service == SERVICE]
        await asyncio.gather(self.postgres.start(databases), self._redis.start(redis))

    async def close(self) -> None:
        """Stop every add-on (at server shutdown, after the dynos)."""
        await asyncio.gather(self.postgres.close(), self._redis.close())

    # -- helpers -------------------------------------------------------------------------------

    def _allocate_port(self) -> int:
        """A free port that no add-on had at the server's start: they all start at once,
        and one whose server does not listen yet would look free to a move."""
        for _ in range(100):
            if (port := self._free_port()) not in self._recorded:
                return port
        raise PlatformError("No free port for an add-on: each one offered is another's.")

    async def _new_name(self, service: str) -> str:
        """``redis-solid-31337``: Heroku's add-on name pattern, unique on this platform."""
        taken = {a.name for a in await self.list()}
        rng = random.SystemRandom()
        while True:
            name = f"{service}-{rng.choice(_WORDS)}-{rng.randint(10000, 99999)}"
            if name not in taken:
                return name


def _check_free(db: Database, app: App) -> None:
    """Conflict when ``app`` has a redis add-on already, or sets its config var itself."""
    for existing in db.list_addons(app.id):
        if existing.config_var == CONFIG_VAR:
            raise Conflict(
                f"{app.name} has {existing.name} as {CONFIG_VAR} already: "
                f"destroy it first (dynos addons:destroy {existing.name})."
            )
    current = db.current_release(app.id)
    if current is not None and CONFIG_VAR in current.config:
        raise Conflict(
            f"{CONFIG_VAR} is set on {app.name} already: unset it first "
            f"(dynos config:unset {CONFIG_VAR} -a {app.name})."
        )


def _release_var(db: Database, app: App, var: str, url: str | None, description: str) -> Release:
    """A new release of ``app`` with ``var`` set to ``url`` (unset when None); runs in the
    caller's transaction, in the store's thread."""
    # Heroku runs the release phase for a new add-on, not when one's config var goes.
    trigger = Trigger.ADDON_ATTACH if url is not None else Trigger.ADDON_DETACH
    release = release_config(db, app, {var: url}, description, trigger).release
    assert release is not None  # a described release is always made
    return release


def _attachment_names(addon: Addon) -> tuple[str, ...]:
    """What names the add-on's attachment, lowercased: ``database``, ``database_url``."""
    var = addon.config_var.lower()
    return (var, var.removesuffix("_url"))


def _service_names(addon: Addon) -> tuple[str, ...]:
    if addon.service == postgres_plans.SERVICE:
        return postgres_plans.ALIASES_OF_SERVICE
    return (addon.service, f"heroku-{addon.service}")
