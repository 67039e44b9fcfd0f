"""The state database's connection: opened (WAL, foreign keys) and migrated, and the
transactions and snapshots every query of database.py runs in."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dynos.store.schema import migrate
from dynos.store.sqlite import copy_database, open_connection, store_error


class StateConnection:
    """The state database's connection, for the one thread that opened it (sqlite3 checks):
    opened and migrated, its transactions and snapshots. :class:`Database` adds the queries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        conn = open_connection(path, create=True)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            self.schema_version = migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise (store_error(exc, path) or exc) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        self._conn.close()

    @property
    def changes(self) -> int:
        """Rows changed since this database was opened (tells whether a backup is due)."""
        return self._conn.total_changes

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes: all of them land, or none. Nests: an inner one joins the
        outer. The write lock is taken at once, so a locked database fails before anything."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # COMMIT itself may fail: never leave one open
                self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the database. Deferred: in WAL mode a reader
        never waits for a writer, not even another process's."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def backup_to(self, target: Path) -> None:
        copy_database(self._conn, target)
