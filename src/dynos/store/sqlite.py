"""SQLite files as dynos uses them: opened and checked, copied whole, and sqlite3's errors
turned into typed errors whose message says what to do (a locked database is a 503 to retry,
a damaged one names the restore command). sqlite3's own errors never reach a user.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from dynos.errors import (
    Conflict,
    DatabaseDamaged,
    DatabaseLocked,
    DynosError,
    Unavailable,
    UserError,
)

# How long a write waits for another process's lock before it is refused with a 503. Only
# another process can hold it (this one writes from a single thread): an sqlite3 shell, a
# copy tool. Short, because every store call queues behind a waiting one.
BUSY_TIMEOUT = 2.0


def store_error(exc: sqlite3.Error, path: Path) -> DynosError | None:
    """The typed error for an sqlite3 error on the database at ``path``; None for a bug
    (a wrong query, a closed connection), which stays an internal error."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return DatabaseLocked(
            f"The database {path} is locked by another process: nothing was changed. Retry in "
            "a moment; if it lasts, end what holds it open (an sqlite3 shell in a transaction)."
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return damaged(path, str(exc))
    if primary == sqlite3.SQLITE_FULL:
        return Unavailable(
            f"The disk holding {path} is full: nothing was changed. Free some space and retry."
        )
    if primary == sqlite3.SQLITE_CONSTRAINT:
        return Conflict(
            "This change clashed with another one made at the same time (the app may have been "
            "destroyed meanwhile): nothing was changed. Check the app and run it again."
        )
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and primary is not None:
        return Unavailable(
            f"The database {path} cannot be used ({exc}): nothing was changed. Check the disk "
            "and the permissions of the server's home, then retry."
        )
    return None


def damaged(path: Path, reason: str) -> DatabaseDamaged:
    return DatabaseDamaged(
        f"The database {path} is damaged ({reason}): stop the server and restore a backup "
        "with 'dynos server:restore' (see docs/cli.md).",
        reason,
    )


def open_connection(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to the database at ``path``, checked readable (``PRAGMA quick_check``).

    Raises DatabaseDamaged for a file that is not a sound SQLite database, and Unavailable
    (or DatabaseLocked) when it cannot be opened. ``create`` makes a missing file (mode 0600:
    it holds add-on passwords), otherwise a missing file is an error.
    """
    if create and not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if not path.is_file():
        raise UserError(f"There is no database at {path}.")
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise damaged(path, str(verdict))
    except sqlite3.Error as exc:
        conn.close()
        raise (store_error(exc, path) or exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def copy_database(conn: sqlite3.Connection, target: Path) -> None:
    """Copy the whole database of ``conn``, consistently, into the new file ``target`` (mode
    0600), with SQLite's online backup: other connections may go on reading and writing."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    copy = sqlite3.connect(target)
    try:
        conn.backup(copy)
        # A rollback journal, not WAL: the copy is one self-contained file, which can be read
        # (and restored) without -wal and -shm files appearing beside it.
        copy.execute("PRAGMA journal_mode = DELETE")
    finally:
        copy.close()
