"""The state database itself (synchronous, as the store's thread uses it): no event loop."""

import sqlite3
from pathlib import Path

import pytest

from dynos.core.release_phase import ReleaseStatus
from dynos.core.sizes import DEFAULT_SIZE, find_size
from dynos.errors import Conflict, NotFound, UserError
from dynos.store.database import Database
from dynos.store.schema import MIGRATIONS


@pytest.fixture
def store(tmp_path: Path) -> Database:
    return Database(tmp_path / "dynos.db")


def test_apps_are_found_by_name_and_by_id(store: Database) -> None:
    app = store.create_app("foo")
    assert store.get_app("foo") == app
    assert store.get_app(app.id) == app


def test_app_names_are_unique(store: Database) -> None:
    store.create_app("foo")
    with pytest.raises(Conflict):
        store.create_app("foo")


def test_unknown_app_is_not_found(store: Database) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.get_app("nope")


def test_releases_are_numbered_per_app(store: Database) -> None:
    foo, bar = store.create_app("foo"), store.create_app("bar")
    for app in (foo, foo, bar):
        store.create_release(app.id, "x", slug_id=None, processes={}, config={})
    assert [r.version for r in store.list_releases(foo.id)] == [1, 2]
    assert store.get_release(foo.id, "v2").version == 2
    assert store.current_release(bar.id) is not None


def test_state_survives_reopening_the_database(tmp_path: Path) -> None:
    first = Database(tmp_path / "dynos.db")
    app = first.create_app("foo")
    first.create_release(app.id, "d", slug_id="s", processes={"web": "w"}, config={"K": "v"})
    first.set_formation(app.id, "web", 3, "Standard-2X")
    first.close()
    second = Database(tmp_path / "dynos.db")
    release = second.current_release(app.id)
    assert release is not None and release.config == {"K": "v"}
    assert [(f.type, f.quantity, f.size) for f in second.formation(app.id)] == [
        ("web", 3, find_size("Standard-2X"))
    ]
    assert second.schema_version == len(MIGRATIONS)


def test_a_failed_transaction_changes_nothing(store: Database) -> None:
    app = store.create_app("foo")
    with pytest.raises(RuntimeError), store.transaction():
        store.set_formation(app.id, "web", 1, "Standard-1X")
        raise RuntimeError("boom")
    assert store.formation(app.id) == []


def test_deleting_an_app_removes_its_releases_and_formation(store: Database) -> None:
    app = store.create_app("foo")
    store.create_release(app.id, "d", slug_id=None, processes={}, config={})
    store.set_formation(app.id, "web", 1, "Standard-1X")
    store.delete_app(app.id)
    assert store.list_releases(app.id) == []
    assert store.formation(app.id) == []


def test_app_settings_are_stored_as_json_and_removed_with_none(store: Database) -> None:
    app = store.create_app("foo")
    store.set_app_setting(app.id, "idle_after", 600)
    store.set_app_setting(app.id, "health_check_path", "/health")
    store.set_app_setting(app.id, "health_check_path", None)
    assert store.app_settings(app.id) == {"idle_after": 600}
    assert store.all_app_settings() == {app.id: {"idle_after": 600}}


def test_formation_sizes_come_back_as_sizes_and_unknown_names_are_refused(
    store: Database,
) -> None:
    app = store.create_app("foo")
    store.set_formation(app.id, "web", 1, DEFAULT_SIZE)
    store.set_formation(app.id, "worker", 2, "2x")  # a name is looked up: its display name is kept
    with pytest.raises(UserError, match="Unknown dyno size"):
        store.set_formation(app.id, "clock", 1, "Huge-9X")
    formation = {f.type: f.size for f in store.formation(app.id)}
    assert formation == {"web": DEFAULT_SIZE, "worker": find_size("Standard-2X")}
    row = store._conn.execute("SELECT size FROM formation WHERE type = 'worker'").fetchone()
    assert row["size"] == "Standard-2X"  # the database keeps the name


def test_the_live_release_is_the_newest_that_succeeded(store: Database) -> None:
    app = store.create_app("foo")
    first = store.create_release(app.id, "a", slug_id="s", processes={}, config={})
    pending = store.create_release(
        app.id,
        "b",
        slug_id="s",
        processes={"release": "x"},
        config={},
        status=ReleaseStatus.PENDING,
        output_key="k1",
    )
    assert store.current_release(app.id) == first
    assert [s.release for s in store.app_states()] == [first]
    assert store.pending_releases(app.id) == [pending] == store.pending_releases()
    assert store.release_by_output_key("k1") == pending
    assert store.release_by_output_key("k2") is None
    failed = store.set_release_status(pending.id, ReleaseStatus.FAILED)
    assert (failed.status, failed.version) == (ReleaseStatus.FAILED, 2)
    assert failed.updated_at is not None
    assert store.current_release(app.id) == first
    assert store.pending_releases() == []
    with pytest.raises(ValueError, match="from failed to succeeded"):
        store.set_release_status(pending.id, ReleaseStatus.SUCCEEDED)
    third = store.create_release(
        app.id, "c", slug_id="s", processes={}, config={}, status=ReleaseStatus.PENDING
    )
    live = store.set_release_status(third.id, ReleaseStatus.SUCCEEDED)
    assert store.current_release(app.id) == live
    assert [s.release for s in store.app_states()] == [live]
    with pytest.raises(NotFound):
        store.set_release_status("no-such-release", ReleaseStatus.FAILED)


def test_migrating_a_v3_database_keeps_its_releases_and_drops_release_from_formation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dynos.db"
    conn = sqlite3.connect(path)
    for number, migration in enumerate(MIGRATIONS[:3], start=1):
        conn.executescript(f"BEGIN; {migration} PRAGMA user_version = {number}; COMMIT;")
    conn.executescript(
        "INSERT INTO apps VALUES ('a1', 'old', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');"
        "INSERT INTO releases VALUES ('r1', 'a1', 1, 'Deploy', 's1',"
        ' \'{"web": "w", "release": "r"}\', \'{}\', \'2024-01-01T00:00:00Z\');'
        "INSERT INTO formation VALUES ('f1', 'a1', 'web', 1, 'Standard-1X',"
        " '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');"
        "INSERT INTO formation VALUES ('f2', 'a1', 'release', 0, 'Standard-1X',"
        " '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');"
    )
    conn.close()
    db = Database(path)
    release = db.current_release("a1")
    assert release is not None and release.status is ReleaseStatus.SUCCEEDED
    assert release.output_key is None
    assert [f.type for f in db.formation("a1")] == ["web"]


def test_log_drains_per_app_unique_url_limited_and_gone_with_the_app(store: Database) -> None:
    foo, bar = store.create_app("foo"), store.create_app("bar")
    first = store.add_log_drain(foo.id, "https://a.example.com/", "d.1")
    store.add_log_drain(bar.id, "https://a.example.com/", "d.2")  # another app may share a URL
    assert (first.app_name, first.url, first.token) == ("foo", "https://a.example.com/", "d.1")
    with pytest.raises(Conflict, match="already added"):
        store.add_log_drain(foo.id, "https://a.example.com/", "d.3")
    for n in range(4):
        store.add_log_drain(foo.id, f"https://{n}.example.com/", f"d.foo{n}")
    with pytest.raises(UserError, match="the most it may have"):
        store.add_log_drain(foo.id, "https://6.example.com/", "d.6")
    assert [d.token for d in store.log_drains(foo.id)][:2] == ["d.1", "d.foo0"]
    assert store.delete_log_drain(first.id) and not store.delete_log_drain(first.id)
    store.delete_app(foo.id)
    assert [d.token for d in store.log_drains()] == ["d.2"]
