"""Backups of the state database: taken online, kept for a while, restored while no server runs.

They live in ``<home>/backups``: ``dynos-<UTC time>.db`` are the server's scheduled ones (at
start, then every ``--backup-every`` seconds when something changed; the oldest beyond
``--backup-keep`` are removed), ``dynos-<UTC time>-manual.db`` those of ``dynos
server:backup``, which the server never removes. Each is one self-contained SQLite file
(mode 0600: it holds add-on passwords), written under a temporary name and then renamed, so
that a backup that exists is whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dynos.errors import DynosError, UserError
from dynos.store.schema import MIGRATIONS
from dynos.store.sqlite import copy_database, open_connection, store_error

if TYPE_CHECKING:
    from dynos.store.database import Database
    from dynos.store.store import Store

log = logging.getLogger(__name__)

_SCHEDULED = re.compile(r"dynos-\d{8}T\d{12}Z\.db")
_ANY = re.compile(r"dynos-\d{8}T\d{12}Z(-manual)?\.db")
_WRITING = re.compile(r"dynos-.*\.db\.(\d+)\.tmp")  # a backup being written, by that pid


def _name(now: datetime, manual: bool) -> str:
    """``dynos-20260101T120000123456Z.db``: sorts by time, and two never share a name."""
    return f"dynos-{now.strftime('%Y%m%dT%H%M%S%f')}Z{'-manual' if manual else ''}.db"


def take(db: Database, directory: Path, *, keep: int | None, manual: bool = False) -> Path:
    """Back ``db`` up into ``directory``; then, with ``keep``, prune the scheduled ones."""
    target = _prepare(directory, manual)
    temporary = _temporary(target)
    try:
        db.backup_to(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    if keep is not None:
        prune(directory, keep)
    return target


def backup_home(database: Path, directory: Path) -> Path:
    """``dynos server:backup``: back the database file up from this process, whether a server
    runs on it or not (a reader never blocks SQLite's writer in WAL mode)."""
    if not database.is_file():
        raise UserError(f"There is no database at {database}: nothing to back up.")
    target = _prepare(directory, manual=True)
    temporary = _temporary(target)
    conn = open_connection(database, create=False)
    try:
        copy_database(conn, temporary)
        os.replace(temporary, target)
    except sqlite3.Error as exc:
        raise (store_error(exc, database) or exc) from exc
    finally:
        conn.close()
        temporary.unlink(missing_ok=True)
    return target


def _prepare(directory: Path, manual: bool) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    for left in directory.glob("dynos-*.tmp"):  # a backup that a crash cut short
        writing = _WRITING.fullmatch(left.name)
        if writing is None or not _alive(int(writing.group(1))):
            left.unlink(missing_ok=True)
    return directory / _name(datetime.now(UTC), manual)


def _temporary(target: Path) -> Path:
    """Where ``target`` is written first: named by this process, so that the server's
    scheduled backup and a ``server:backup`` at the same moment never remove each other's
    file as a crash's leftover (the one whose file went failed: "disk I/O error", CI)."""
    return target.with_name(f"{target.name}.{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune(directory: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` scheduled backups; manual ones stay. Returns the
    removed ones."""
    scheduled = sorted(p for p in directory.iterdir() if _SCHEDULED.fullmatch(p.name))
    removed = scheduled[: max(0, len(scheduled) - keep)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def newest(directory: Path) -> Path | None:
    """The most recent backup of either kind, if there is one."""
    try:
        found = [p for p in directory.iterdir() if _ANY.fullmatch(p.name)]
    except OSError:
        return None
    return max(found, key=lambda p: p.name[: len("dynos-YYYYmmddTHHMMSSffffffZ")], default=None)


def check_backup(backup: Path) -> int:
    """The schema version of a usable dynos backup; UserError saying why otherwise."""
    if not backup.is_file():
        raise UserError(f"There is no backup at {backup}: see 'ls <home>/backups'.")
    try:
        conn = open_connection(backup, create=False)
    except DynosError as exc:
        raise UserError(f"{backup} cannot be restored: {exc.message}") from exc
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise UserError(f"{backup} cannot be restored: {exc}.") from exc
    finally:
        conn.close()
    if not 1 <= version <= len(MIGRATIONS) or "apps" not in tables:
        raise UserError(
            f"{backup} is not a backup of this dynos's database (schema v{version}; this "
            f"dynos knows v1 to v{len(MIGRATIONS)})."
        )
    return int(version)


def restore(backup: Path, database: Path) -> Path | None:
    """Make ``database`` a copy of ``backup``. The caller makes sure no server runs.

    The database it replaces (with its -wal and -shm files, which must not outlive it: SQLite
    would apply that log to the restored file) is moved aside, never deleted; its new name is
    returned (None when there was none).
    """
    check_backup(backup)
    incoming = database.with_name(database.name + ".restoring")
    incoming.unlink(missing_ok=True)
    source = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    try:
        copy_database(source, incoming)
    except sqlite3.Error as exc:
        incoming.unlink(missing_ok=True)
        raise UserError(f"{backup} cannot be restored: {exc}.") from exc
    finally:
        source.close()
    aside = None
    if database.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = database.with_name(f"{database.name}.replaced-{stamp}")
        os.replace(database, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(f"{database}{suffix}")
        if side.exists():
            # Beside the replaced file under the name SQLite looks for, or gone with it.
            if aside is not None:
                os.replace(side, Path(f"{aside}{suffix}"))
            else:
                side.unlink()
    os.replace(incoming, database)
    return aside


async def keep_backups(store: Store, directory: Path, every: float, keep: int) -> None:
    """The server's schedule: a backup now, then one every ``every`` seconds in which the
    database changed. A failed one is logged and tried again at the next turn."""
    taken_at: int | None = None  # the store's change count when the last backup was taken
    while True:
        changes = await store.changes()
        if changes != taken_at:
            try:
                await store.backup(directory, keep=keep)
                taken_at = changes
            except (DynosError, OSError) as exc:
                log.error("backup of the database into %s failed: %s", directory, exc)
        await asyncio.sleep(every)
