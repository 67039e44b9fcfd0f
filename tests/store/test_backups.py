"""Backups of the state database and their restore, on real SQLite files (no server)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from dynos.errors import UserError
from dynos.store import backups
from dynos.store.database import Database
from dynos.store.store import Store

pytestmark = pytest.mark.anyio


def app_names(path: Path) -> list[str]:
    db = Database(path)
    try:
        return [a.name for a in db.list_apps()]
    finally:
        db.close()


def test_a_backup_is_a_whole_private_database_file(tmp_path: Path) -> None:
    db = Database(tmp_path / "dynos.db")
    db.create_app("kept")
    target = backups.take(db, tmp_path / "backups", keep=None)
    db.create_app("later")  # after the backup: not in it
    db.close()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert app_names(target) == ["kept"]
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no -wal, no .tmp


def test_pruning_keeps_the_newest_scheduled_backups_and_every_manual_one(tmp_path: Path) -> None:
    db = Database(tmp_path / "dynos.db")
    directory = tmp_path / "backups"
    manual = backups.take(db, directory, keep=None, manual=True)
    taken = [backups.take(db, directory, keep=2) for _ in range(4)]
    db.close()
    left = sorted(directory.iterdir())
    assert left == sorted([manual, *taken[-2:]])
    assert backups.newest(directory) == taken[-1]
    assert backups.newest(tmp_path / "none") is None


def test_restore_replaces_a_damaged_database_and_keeps_it_aside_with_its_log(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dynos.db"
    db = Database(path)
    db.create_app("precious")
    backup = backups.take(db, tmp_path / "backups", keep=None)
    db.create_app("lost")
    db.close()
    Path(f"{path}-wal").write_bytes(b"a log that belongs to the damaged file")
    with path.open("r+b") as file:
        file.write(b"garbage" * 10)

    aside = backups.restore(backup, path)

    assert aside is not None and aside.read_bytes().startswith(b"garbage")
    assert Path(f"{aside}-wal").read_bytes().startswith(b"a log")
    assert not Path(f"{path}-wal").exists()  # SQLite would have applied it to the restored file
    assert app_names(path) == ["precious"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_restore_refuses_what_is_not_a_dynos_backup_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dynos.db"
    Database(path).close()
    before = path.read_bytes()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(UserError, match="cannot be restored"):
        backups.restore(garbage, path)
    with pytest.raises(UserError, match="no backup at"):
        backups.restore(tmp_path / "missing.db", path)
    Database(tmp_path / "newer.db").close()
    conn = sqlite3.connect(tmp_path / "newer.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(UserError, match="schema v999"):
        backups.restore(tmp_path / "newer.db", path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dynos.db",
        "garbage.db",
        "newer.db",
    ]


async def test_the_schedule_backs_up_at_start_then_only_after_changes(tmp_path: Path) -> None:
    directory = tmp_path / "backups"

    store = await Store.open(tmp_path / "dynos.db")
    schedule = asyncio.create_task(backups.keep_backups(store, directory, 0.05, keep=3))
    try:
        await asyncio.sleep(0.3)  # six turns, nothing changed: the start backup only
        assert len(list(directory.iterdir())) == 1
        for name in ("one", "two", "three", "four"):
            await store.transaction(lambda db, name=name: db.create_app(name))
            await asyncio.sleep(0.15)
    finally:
        schedule.cancel()
        await store.close()

    kept = sorted(directory.iterdir())
    assert len(kept) == 3  # pruned to --backup-keep
    assert app_names(kept[-1]) == ["four", "one", "three", "two"]


def test_a_backup_another_process_is_writing_is_not_taken_for_a_crashs_leftover(
    tmp_path: Path,
) -> None:
    # The server's scheduled backup and a `server:backup` write at once: each one's start
    # removed the other's temporary file as a crash's leftover (a disk I/O error, in CI).
    db = Database(tmp_path / "dynos.db")
    directory = tmp_path / "backups"
    directory.mkdir()
    live = directory / f"dynos-20260101T000000000000Z.db.{os.getppid()}.tmp"  # pytest's parent
    dead = directory / "dynos-20260101T000000000001Z.db.999999999.tmp"  # no such pid
    old = directory / "dynos-20260101T000000000002Z.db.tmp"  # an older version's name
    for path in (live, dead, old):
        path.write_bytes(b"partial")
    target = backups.take(db, directory, keep=None)
    db.close()
    assert sorted(p.name for p in directory.iterdir()) == sorted([live.name, target.name])
