"""The state database itself (synchronous, as the store's thread uses it): no event loop."""

from pathlib import Path

import pytest

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
