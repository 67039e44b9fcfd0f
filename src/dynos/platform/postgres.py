"""Postgres add-ons: a database and a role each, in the server's one cluster
(:mod:`dynos.platform.postgres_server`).

Creating one starts the cluster if it is not running (initdb the first time), makes a role
with a random password and its plan's connection limit and a database it owns that no other
role may connect to, and only then records the add-on and releases the app with its URL
(``DATABASE_URL`` first, ``HEROKU_POSTGRESQL_<COLOR>_URL`` after: the rules are in
:mod:`dynos.core.postgres_plans`). Destroying one releases the app without it, then drops the
database (its connections ended) and the role, and deletes its backups.

While the cluster runs, a check every ``CHECK_INTERVAL`` seconds (and every ``pg:info``) holds
each database to its storage cap: past it INSERT, UPDATE and CREATE are revoked from the role
(reads, DELETE and TRUNCATE still work, as on Heroku) and the app's log says so; once it is
back within the cap they are granted again. A cluster that dies is logged and started again
with the dyno restart back-off.

Backups are :mod:`dynos.platform.postgres_backups`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

from dynos.core import postgres_plans as plans
from dynos.core.release_phase import Trigger
from dynos.core.restart_policy import RestartPolicy
from dynos.errors import Conflict, DynosError, NotFound, PlatformError, PortTaken, Unavailable
from dynos.logs.logline import APP, PLATFORM
from dynos.platform.context import Services, announce_release
from dynos.platform.postgres_backups import Backups
from dynos.platform.postgres_server import Cluster
from dynos.platform.releases import release_config
from dynos.store.database import Database
from dynos.store.models import Addon, App, Release

log = logging.getLogger(__name__)

CHECK_INTERVAL = 30.0  # seconds between storage checks
LOG_SOURCE = "heroku-postgres"  # app[heroku-postgres]: as Heroku's lines about a database


@dataclass(frozen=True)
class DatabaseInfo:
    """What pg:info shows about one add-on's database."""

    addon: Addon
    plan: plans.PostgresPlan
    status: str  # "Available", "Over Plan Capacity: Access Restricted", "Unavailable"
    version: str
    data_size: int
    storage_cap: int
    tables: int
    connections: int


class PostgresDatabases:
    """The Postgres add-ons of every app, in one cluster."""

    def __init__(
        self,
        platform: Services,
        cluster: Cluster,
        policy: RestartPolicy | None = None,
        *,
        storage_cap_mb: int | None = None,
    ) -> None:
        self._platform = platform
        self._store = platform.store
        self.cluster = cluster
        self._policy = policy or RestartPolicy()
        self._cap_mb = storage_cap_mb  # the server's own cap below every plan's (a small disk)
        self._start_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._stopping = False
        self.backups = Backups(cluster, self.ensure_running)

    # -- the cluster ------------------------------------------------------------------------------

    async def ensure_running(self) -> None:
        """Start the cluster unless it runs; PlatformError when it cannot (the supervisor
        then tries again with the dynos' back-off)."""
        async with self._start_lock:
            if self.cluster.running:
                return
            self._stopping = False
            if self._supervisor is None or self._supervisor.done():
                self._supervisor = asyncio.create_task(self._supervise())
            if self._checker is None or self._checker.done():
                self._checker = asyncio.create_task(self._check_periodically())
            await self._start_cluster()

    async def _start_cluster(self) -> None:
        """Start it (under the start lock); on a port another process took meanwhile, on a
        new port. Every database recorded on another port than the cluster's (the port moved,
        now or at a start cut short before its apps were released) gets its app released with
        its new URL."""
        try:
            await self.cluster.start()
        except PortTaken as exc:
            log.warning("%s: moving the Postgres cluster to another port", exc.message)
            self.cluster.move_port()
            await self.cluster.start()
        await self._repoint(self.cluster.admin().port)

    async def _repoint(self, port: int) -> None:
        """Record ``port`` for every database and release each app with its new URLs (at
        once: no release phase), one app at a time: an app whose release command runs
        refuses a release meanwhile, and is tried again by the periodic check."""
        for addon in await self._store.list_addons():
            if addon.service != plans.SERVICE or addon.port == port:
                continue

            def move(db: Database, addon: Addon = addon) -> tuple[App, Release | None, str]:
                db.set_addon_port(addon.id, port)
                app = db.get_app(addon.app_id)
                url = plans.database_url(plans.database_name(addon.name), addon.password, port)
                attachment = plans.attachment_name(addon.config_var)
                description = f"Update {attachment} by heroku-postgresql"
                changes = {addon.config_var: url}
                release = release_config(db, app, changes, description, Trigger.ADDON_MOVED)
                return app, release.release, description

            try:
                app, release, description = await self._store.transaction(move)
            except (Conflict, NotFound, Unavailable) as exc:
                log.info("%s keeps its old URL for now: %s", addon.name, exc.message)
                continue
            if release is not None:
                announce_release(self._platform, app, description, release)

    async def start(self, addons: list[Addon]) -> None:
        """At server start: run the cluster when any app has a database. A failure is logged
        on each of those apps, and the supervisor tries again."""
        if not addons:
            return
        try:
            await self.ensure_running()
        except DynosError as exc:
            log.error("the Postgres cluster did not start: %s", exc.message)
            for addon in addons:
                await self._log(addon, f"{addon.name} is unavailable: {exc.message}")

    async def close(self) -> None:
        self._stopping = True
        for task in (self._checker, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.cluster.stop()

    async def _supervise(self) -> None:
        """Start the cluster again whenever it dies or did not start, with the dynos'
        back-off (a start already under way elsewhere is waited for, not repeated)."""
        crashes, started = 0, time.monotonic()
        while not self._stopping:
            process = self.cluster.process
            if process is not None:
                status = await process.wait()
                if self._stopping:
                    return
                async with self._start_lock:  # a start under way elsewhere ends first
                    if self.cluster.process is not process:
                        # That start stopped this process and made another (a port taken
                        # moves it): finishing now would release the new one's sandbox.
                        continue
                    oom_killed = await self.cluster.finished()
                why = " (killed at its memory cap)" if oom_killed else ""
                log.warning("the Postgres cluster exited with status %s%s", status, why)
                await self._log_all(f"Postgres exited with status {status}{why}")
            crashes = self._policy.crash_count(crashes, started, time.monotonic())
            await asyncio.sleep(self._policy.delay(crashes))
            started = time.monotonic()
            try:
                async with self._start_lock:
                    if self._stopping or self.cluster.running:
                        continue
                    await self._start_cluster()
            except DynosError as exc:
                log.error("the Postgres cluster did not start: %s", exc.message)
                continue
            await self._log_all("Postgres is up again")

    # -- add-ons ----------------------------------------------------------------------------------

    async def create(self, app: App, plan: plans.PostgresPlan, name: str) -> Addon:
        """A database and role for ``app`` called after the add-on ``name``, then the record
        and the release with its URL (DATABASE_URL, or a HEROKU_POSTGRESQL_<COLOR>_URL when
        the app has that). Conflict when the name is taken; on any failure nothing is left."""
        if any(a.name == name for a in await self._store.list_addons()):
            raise Conflict(f"An add-on called {name} exists already: choose another name.")
        port, password = await self.provision(name, plan)
        database = plans.database_name(name)
        url = plans.database_url(database, password, port)

        def record(db: Database) -> tuple[Addon, Release, str]:
            current = db.current_release(app.id)
            taken = {a.config_var for a in db.list_addons(app.id)}
            taken |= set(current.config if current is not None else ())
            var = plans.config_var_for(taken)
            attachment = plans.attachment_name(var)
            description = f"Attach {attachment} (@ref:{name})"
            addon = db.create_addon(
                app.id,
                name,
                service=plans.SERVICE,
                plan=f"{plans.SERVICE}:{plan.name}",
                config_var=var,
                port=port,
                password=password,
            )
            release = release_config(db, app, {var: url}, description).release
            assert release is not None  # a described release is always made
            return addon, release, description

        try:
            addon, release, description = await self._store.transaction(record)
        except BaseException:
            with contextlib.suppress(DynosError):
                await self.drop_database(name)
            raise
        announce_release(self._platform, app, description, release)
        return addon

    async def provision(self, addon_name: str, plan: plans.PostgresPlan) -> tuple[int, str]:
        """Make the role and database of a new add-on; its port and password. On failure
        nothing is left of it."""
        await self.ensure_running()
        name = plans.database_name(addon_name)
        password = _password()
        await self._drop(name)  # what a failed destroy may have left under this name
        try:
            await self.cluster.sql(
                f"CREATE ROLE {name} LOGIN PASSWORD '{password}' "
                f"CONNECTION LIMIT {plan.connections}",
                f"CREATE DATABASE {name} OWNER {name}",
                f"REVOKE ALL ON DATABASE {name} FROM PUBLIC",
            )
        except BaseException:
            with contextlib.suppress(DynosError):
                await self._drop(name)
            raise
        return self.cluster.admin().port, password

    async def deprovision(self, addon: Addon) -> None:
        """Drop the add-on's database and role, delete its backups."""
        await self.ensure_running()
        await self._drop(plans.database_name(addon.name))
        self.backups.delete_all(addon)

    async def drop_database(self, addon_name: str) -> None:
        """Drop the database and role of the add-on ``addon_name`` (recorded or not)."""
        await self._drop(plans.database_name(addon_name))

    async def _drop(self, name: str) -> None:
        await self.cluster.sql(
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"DROP ROLE IF EXISTS {name}"
        )

    # -- pg:info and the storage cap ---------------------------------------------------------------

    def storage_cap(self, plan: plans.PostgresPlan) -> int:
        if self._cap_mb is None:
            return plan.storage_bytes
        return min(plan.storage_bytes, self._cap_mb * 1024 * 1024)

    async def info(self, addon: Addon) -> DatabaseInfo:
        """The database's state, after holding it to its cap."""
        plan = plans.plan_of(addon.plan)
        cap = self.storage_cap(plan)
        try:
            await self.ensure_running()
            restricted = await self.enforce(addon)
            name = plans.database_name(addon.name)
            [[size, connections, version]] = await self.cluster.sql(
                f"SELECT pg_database_size('{name}'), "
                f"(SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'), "
                "current_setting('server_version')"
            )
            [[tables]] = await self.cluster.sql(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN "
                "('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'",
                database=name,
            )
        except PlatformError as exc:
            log.warning("pg:info of %s: %s", addon.name, exc.message)
            return DatabaseInfo(addon, plan, "Unavailable", "", 0, cap, 0, 0)
        status = "Over Plan Capacity: Access Restricted" if restricted else "Available"
        return DatabaseInfo(
            addon, plan, status, version, int(size), cap, int(tables), int(connections)
        )

    async def enforce(self, addon: Addon) -> bool:
        """Hold one database to its storage cap; whether it is restricted now."""
        name = plans.database_name(addon.name)
        cap = self.storage_cap(plans.plan_of(addon.plan))
        [[size, may_create]] = await self.cluster.sql(
            f"SELECT pg_database_size('{name}'), has_database_privilege('{name}', '{name}', "
            "'CREATE')"
        )
        restricted = may_create != "t"
        action = plans.storage_action(int(size), cap, restricted)
        if action is None:
            return restricted
        schemas = await self.cluster.sql(
            f"SELECT quote_ident(nspname) FROM pg_namespace WHERE nspowner = '{name}'::regrole "
            "OR nspname = 'public'",
            database=name,
        )
        names = ", ".join(schema for (schema,) in schemas) or "public"
        mb, cap_mb = int(size) / 2**20, cap / 2**20
        if action == "restrict":
            await self.cluster.sql(
                f"REVOKE CREATE ON DATABASE {name} FROM {name}",
                f"REVOKE CREATE ON SCHEMA {names} FROM {name}, pg_database_owner",
                f"REVOKE INSERT, UPDATE ON ALL TABLES IN SCHEMA {names} FROM {name}",
                database=name,
            )
            await self._log(
                addon,
                f"{addon.name} is over its plan's storage ({mb:.1f} MB of {cap_mb:.0f} MB): "
                "INSERT, UPDATE and CREATE are revoked until data is deleted or the plan is "
                "upgraded",
            )
            return True
        await self.cluster.sql(
            f"GRANT CREATE ON DATABASE {name} TO {name}",
            f"GRANT CREATE ON SCHEMA {names} TO {name}",
            "GRANT CREATE ON SCHEMA public TO pg_database_owner",
            f"GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA {names} TO {name}",
            database=name,
        )
        await self._log(
            addon,
            f"{addon.name} is within its plan's storage again ({mb:.1f} MB of {cap_mb:.0f} MB): "
            "INSERT, UPDATE and CREATE are granted again",
        )
        return False

    async def _check_periodically(self) -> None:
        while not self._stopping:
            await asyncio.sleep(CHECK_INTERVAL)
            if not self.cluster.running:
                continue
            await self._repoint(self.cluster.admin().port)  # a move an app's release held up
            for addon in await self._store.list_addons():
                if addon.service != plans.SERVICE:
                    continue
                try:
                    await self.enforce(addon)
                except DynosError as exc:
                    log.warning("storage check of %s: %s", addon.name, exc.message)

    # -- helpers -------------------------------------------------------------------------------

    async def _log(self, addon: Addon, message: str) -> None:
        with contextlib.suppress(NotFound, Unavailable):
            app = await self._store.get_app(addon.app_id)
            self._platform.logs.emit(app.name, APP, LOG_SOURCE, message)

    async def _log_all(self, message: str) -> None:
        with contextlib.suppress(Unavailable):
            apps: dict[str, App] = {}
            for addon in await self._store.list_addons():
                if addon.service == plans.SERVICE and addon.app_id not in apps:
                    with contextlib.suppress(NotFound):
                        apps[addon.app_id] = await self._store.get_app(addon.app_id)
            for app in apps.values():
                self._platform.logs.emit(app.name, PLATFORM, LOG_SOURCE, message)


def _password() -> str:
    """Hex: it goes into SQL as a literal and into a URL as it is."""
    return secrets.token_hex(24)
