"""The store: the state database, reached from the event loop without ever blocking it.

One thread of its own owns the SQLite connection and runs every call, in the order they were
made; the loop awaits the answers. SQLite answers in microseconds, but a write can wait for
another process's lock (up to ``BUSY_TIMEOUT``), a disk can stall, a backup copies the whole
file: none of that may freeze the router, which shares the loop with the API and the manager.
One thread, not a pool: calls never race each other, and a use-case's read-modify-write runs
as one function in one transaction (:meth:`Store.transaction`), so concurrent requests cannot
interleave inside it. Functions sent to the thread touch only the database, never the loop's
objects (logs, the manager); the caller acts on their result once it is back on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from dynos.store import backups
from dynos.store.database import Database
from dynos.store.models import Addon, App, AppState, Domain, Formation, Release
from dynos.store.sqlite import store_error

T = TypeVar("T")
P = ParamSpec("P")


class Store:
    def __init__(self, executor: ThreadPoolExecutor, database: Database) -> None:
        self._executor = executor
        self._db = database
        self.path = database.path
        self.schema_version = database.schema_version

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (or create) the database at ``path`` in the store's thread.

        Raises DatabaseDamaged for a file that is not a sound SQLite database.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dynos-store")
        try:
            database = await asyncio.get_running_loop().run_in_executor(executor, Database, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, database)

    async def close(self) -> None:
        await self.call(Database.close)
        self._executor.shutdown(wait=False)  # its thread ends once idle: it is now

    async def call(
        self, fn: Callable[Concatenate[Database, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(database, *args, **kwargs)`` in the store's thread; its sqlite3 errors come
        back typed (DatabaseLocked, DatabaseDamaged, Unavailable)."""
        job = functools.partial(self._run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def _run(
        self, fn: Callable[Concatenate[Database, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return fn(self._db, *args, **kwargs)
        except sqlite3.Error as exc:
            typed = store_error(exc, self.path)
            if typed is None:
                raise
            raise typed from exc

    async def transaction(self, change: Callable[[Database], T]) -> T:
        """``change(database)`` in one transaction: every write lands, or none (it raises).

        ``change`` runs in the store's thread: it may raise a UserError to undo everything,
        but must leave the loop's objects alone.
        """
        return await self.call(Database.in_transaction, change)

    async def backup(self, directory: Path, *, keep: int | None, manual: bool = False) -> Path:
        """An online backup into ``directory`` (see :mod:`.backups`); with ``keep``, the
        oldest scheduled backups beyond that many are then removed."""
        return await self.call(backups.take, directory, keep=keep, manual=manual)

    async def changes(self) -> int:
        return await self.call(lambda db: db.changes)

    # -- reads --------------------------------------------------------------------------------

    async def app_states(self) -> list[AppState]:
        return await self.call(Database.app_states)

    async def list_apps(self) -> list[App]:
        return await self.call(Database.list_apps)

    async def get_app(self, name_or_id: str) -> App:
        return await self.call(Database.get_app, name_or_id)

    async def list_releases(self, app_id: str) -> list[Release]:
        return await self.call(Database.list_releases, app_id)

    async def current_release(self, app_id: str) -> Release | None:
        return await self.call(Database.current_release, app_id)

    async def get_release(self, app_id: str, id_or_version: str) -> Release:
        return await self.call(Database.get_release, app_id, id_or_version)

    async def pending_releases(self, app_id: str | None = None) -> list[Release]:
        return await self.call(Database.pending_releases, app_id)

    async def release_by_output_key(self, key: str) -> Release | None:
        return await self.call(Database.release_by_output_key, key)

    async def formation(self, app_id: str) -> list[Formation]:
        return await self.call(Database.formation, app_id)

    async def app_settings(self, app_id: str) -> dict[str, object]:
        return await self.call(Database.app_settings, app_id)

    async def list_addons(self, app_id: str | None = None) -> list[Addon]:
        return await self.call(Database.list_addons, app_id)

    async def list_domains(self, app_id: str) -> list[Domain]:
        return await self.call(Database.list_domains, app_id)
