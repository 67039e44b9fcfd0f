"""The store as the server uses it: its own thread, a real SQLite file, a real second process's
lock (another connection), and the event loop kept free meanwhile."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynos.errors import DatabaseDamaged, DatabaseLocked, UserError
from dynos.store import sqlite
from dynos.store.database import Database
from dynos.store.models import App
from dynos.store.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store on ``tmp_path / "dynos.db"``, open on the test's event loop."""
    store = await Store.open(tmp_path / "dynos.db")
    try:
        yield store
    finally:
        await store.close()


async def test_calls_run_in_the_store_thread_and_the_loop_thread_cannot_touch_sqlite(
    store: Store,
) -> None:
    here = threading.get_ident()
    there = await store.call(lambda db: threading.get_ident())
    assert there != here
    with pytest.raises(sqlite3.ProgrammingError, match="thread"):
        store._db.list_apps()  # the guard: only the store's thread may use the connection


async def test_a_transaction_lands_whole_or_not_at_all(store: Store) -> None:
    def half_then_fail(db: Database) -> None:
        db.create_app("half")
        raise UserError("changed my mind")

    with pytest.raises(UserError):
        await store.transaction(half_then_fail)
    assert await store.list_apps() == []

    def whole(db: Database) -> App:
        app = db.create_app("whole")
        db.create_release(app.id, "Initial release", slug_id=None, processes={}, config={})
        return app

    app = await store.transaction(whole)
    (state,) = await store.app_states()
    assert state.app == app and state.release is not None and state.release.version == 1


async def test_a_write_locked_out_by_another_process_is_refused_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.5)
    path = tmp_path / "dynos.db"

    store = await Store.open(path)  # after the patch: the timeout is set at open
    try:
        await store.transaction(lambda db: db.create_app("before"))
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        other.execute("BEGIN EXCLUSIVE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            with pytest.raises(DatabaseLocked) as raised:
                await store.transaction(lambda db: db.create_app("during"))
            # Reads go on: in WAL mode a reader never waits for a writer.
            assert [a.name for a in await store.list_apps()] == ["before"]
        finally:
            ticker.cancel()
            other.execute("ROLLBACK")
            other.close()
        assert ticks >= 20  # the loop ran all along the 0.5 s wait
        assert raised.value.status == 503 and raised.value.id == "unavailable"
        assert "locked by another process" in raised.value.message
        assert [a.name for a in await store.list_apps()] == ["before"]  # nothing changed
        await store.transaction(lambda db: db.create_app("after"))  # and the lock is gone
        assert [a.name for a in await store.list_apps()] == ["after", "before"]
    finally:
        await store.close()


async def test_a_damaged_file_is_refused_at_open_with_what_sqlite_said(tmp_path: Path) -> None:
    path = tmp_path / "dynos.db"
    Database(path).close()
    with path.open("r+b") as file:
        file.write(b"this is no longer an SQLite header")

    with pytest.raises(DatabaseDamaged) as raised:
        await Store.open(path)
    assert raised.value.reason == "file is not a database"
    assert "dynos server:restore" in raised.value.message


def test_only_the_store_package_imports_sqlite3() -> None:
    """Everything else reaches the database through the store's thread."""
    src = Path(__file__).resolve().parents[2] / "src" / "dynos"
    importers = sorted(
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if re.search(r"^\s*(import sqlite3|from sqlite3 import)", path.read_text(), re.M)
    )
    assert "store/database.py" in importers
    assert [path for path in importers if not path.startswith("store/")] == []
