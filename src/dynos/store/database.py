"""The state database: every piece of desired state, in one SQLite file (WAL).

``Database`` is synchronous and belongs to one thread: the store's own (:mod:`.store`), which
runs every call off the event loop, so that a slow or locked database never stalls the router
or the API. Multi-step changes (a release plus its formation) run in one transaction. Rows
become records (and times text) in rows.py; the connection and its transactions are
connection.py's.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from typing import TypeVar

from dynos.core.release_phase import ReleaseStatus, check_status_change
from dynos.core.sizes import DynoSize, find_size
from dynos.errors import Conflict, NotFound
from dynos.store.acm import AcmTable
from dynos.store.autoscaling import AutoscalingTable
from dynos.store.certificates import CertificateRows
from dynos.store.domains import DomainQueries
from dynos.store.drains import LogDrainTable
from dynos.store.metrics import MetricsTables
from dynos.store.models import Addon, App, AppFeature, AppState, Formation, Release
from dynos.store.rows import (
    addon_from_row,
    app_from_row,
    formation_from_row,
    now,
    release_from_row,
    time_from_text,
    time_text,
)

T = TypeVar("T")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Database(
    CertificateRows, DomainQueries, AcmTable, AutoscalingTable, LogDrainTable, MetricsTables
):
    """The state database, for the one thread that opened it (sqlite3 checks). Custom
    domains' queries are domains.py's (``DomainQueries``, on the same connection), apps'
    certificates' certificates.py's, ACM's acm.py's."""

    def in_transaction(self, change: Callable[[Database], T]) -> T:
        """``change(self)`` in one transaction; the store runs use-cases' writes this way."""
        with self.transaction():
            return change(self)

    # -- the whole desired state, for the manager ---------------------------------------------

    def app_states(self) -> list[AppState]:
        """Every app with its live release, formation and settings, from one snapshot."""
        with self._snapshot():
            apps = [app_from_row(row) for row in self._conn.execute("SELECT * FROM apps")]
            releases = {
                row["app_id"]: release_from_row(row)
                for row in self._conn.execute(
                    "SELECT r.* FROM releases r JOIN (SELECT app_id, MAX(version) AS version"
                    " FROM releases WHERE status = 'succeeded' GROUP BY app_id) newest"
                    " ON r.app_id = newest.app_id AND r.version = newest.version"
                )
            }
            formation: dict[str, list[Formation]] = {}
            for row in self._conn.execute(
                "SELECT * FROM formation ORDER BY app_id, type != 'web', type"
            ):
                formation.setdefault(row["app_id"], []).append(formation_from_row(row))
            settings = self.all_app_settings()
            hostnames = self.hostnames_by_app()
            features: dict[str, set[str]] = {}
            for row in self._conn.execute("SELECT app_id, name FROM app_features WHERE enabled"):
                features.setdefault(row["app_id"], set()).add(row["name"])
        return [
            AppState(
                app,
                releases.get(app.id),
                tuple(formation.get(app.id, ())),
                settings.get(app.id, {}),
                hostnames.get(app.id, ()),
                frozenset(features.get(app.id, ())),
            )
            for app in sorted(apps, key=lambda a: a.name)
        ]

    # -- apps -----------------------------------------------------------------------------

    def create_app(self, name: str) -> App:
        at = now()
        app = App(str(uuid.uuid4()), name, at, at)
        try:
            self._conn.execute(
                "INSERT INTO apps (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (app.id, app.name, time_text(at), time_text(at)),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"Name {name} is already taken: choose another app name.") from exc
        return app

    def list_apps(self) -> list[App]:
        rows = self._conn.execute("SELECT * FROM apps ORDER BY name").fetchall()
        return [app_from_row(row) for row in rows]

    def get_app(self, name_or_id: str) -> App:
        """The app called ``name_or_id`` (or with that id); NotFound if there is none."""
        column = "id" if _is_uuid(name_or_id) else "name"
        row = self._conn.execute(f"SELECT * FROM apps WHERE {column} = ?", (name_or_id,)).fetchone()
        if row is None:
            raise NotFound(
                f"Couldn't find that app: {name_or_id}. Run 'dynos apps' to list your apps."
            )
        return app_from_row(row)

    def rename_app(self, app_id: str, name: str) -> App:
        try:
            self._conn.execute(
                "UPDATE apps SET name = ?, updated_at = ? WHERE id = ?",
                (name, time_text(now()), app_id),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"Name {name} is already taken: choose another app name.") from exc
        return self.get_app(app_id)

    def delete_app(self, app_id: str) -> None:
        self._conn.execute("DELETE FROM apps WHERE id = ?", (app_id,))

    # -- releases ---------------------------------------------------------------------------

    def create_release(
        self,
        app_id: str,
        description: str,
        *,
        slug_id: str | None,
        processes: Mapping[str, str],
        config: Mapping[str, str],
        status: ReleaseStatus = ReleaseStatus.SUCCEEDED,
        output_key: str | None = None,
    ) -> Release:
        """Add the app's next release (v1, v2, ...); its version is one above the newest.
        A pending one (its release phase to run) goes live only by :meth:`set_release_status`.
        """
        with self.transaction():
            return self._insert_release(
                app_id, description, slug_id, processes, config, status, output_key
            )

    def _insert_release(
        self,
        app_id: str,
        description: str,
        slug_id: str | None,
        processes: Mapping[str, str],
        config: Mapping[str, str],
        status: ReleaseStatus = ReleaseStatus.SUCCEEDED,
        output_key: str | None = None,
    ) -> Release:
        (last,) = self._conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM releases WHERE app_id = ?", (app_id,)
        ).fetchone()
        release = Release(
            str(uuid.uuid4()),
            app_id,
            last + 1,
            description,
            slug_id,
            dict(processes),
            dict(config),
            now(),
            status,
            output_key,
        )
        self._conn.execute(
            "INSERT INTO releases (id, app_id, version, description, slug_id, processes,"
            " config, created_at, status, output_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *(release.id, app_id, release.version, description, slug_id),
                json.dumps(release.processes),
                json.dumps(release.config),
                time_text(release.created_at),
                str(status),
                output_key,
            ),
        )
        return release

    def set_release_status(self, release_id: str, status: ReleaseStatus) -> Release:
        """Move a pending release to ``status`` (checked against core/release_phase.py's
        table: ValueError otherwise). NotFound when the release is gone with its app."""
        row = self._conn.execute("SELECT * FROM releases WHERE id = ?", (release_id,)).fetchone()
        if row is None:
            raise NotFound("That release is gone: its app was destroyed.")
        check_status_change(release_from_row(row).status, status)
        self._conn.execute(
            "UPDATE releases SET status = ?, updated_at = ? WHERE id = ?",
            (str(status), time_text(now()), release_id),
        )
        return release_from_row(
            self._conn.execute("SELECT * FROM releases WHERE id = ?", (release_id,)).fetchone()
        )

    def pending_releases(self, app_id: str | None = None) -> list[Release]:
        """The releases whose release phase has not ended: of one app, or of all."""
        if app_id is None:
            rows = self._conn.execute(
                "SELECT * FROM releases WHERE status = 'pending' ORDER BY app_id, version"
            )
        else:
            rows = self._conn.execute(
                "SELECT * FROM releases WHERE status = 'pending' AND app_id = ? ORDER BY version",
                (app_id,),
            )
        return [release_from_row(row) for row in rows.fetchall()]

    def release_by_output_key(self, key: str) -> Release | None:
        row = self._conn.execute("SELECT * FROM releases WHERE output_key = ?", (key,)).fetchone()
        return None if row is None else release_from_row(row)

    def list_releases(self, app_id: str) -> list[Release]:
        rows = self._conn.execute(
            "SELECT * FROM releases WHERE app_id = ? ORDER BY version", (app_id,)
        ).fetchall()
        return [release_from_row(row) for row in rows]

    def current_release(self, app_id: str) -> Release | None:
        """The live release: the newest that succeeded (pending and failed ones never ran)."""
        row = self._conn.execute(
            "SELECT * FROM releases WHERE app_id = ? AND status = 'succeeded'"
            " ORDER BY version DESC LIMIT 1",
            (app_id,),
        ).fetchone()
        return None if row is None else release_from_row(row)

    def get_release(self, app_id: str, id_or_version: str) -> Release:
        """A release by id, or by version (``3`` or ``v3``); NotFound if there is none."""
        text = id_or_version.removeprefix("v")
        if text.isascii() and text.isdigit() and len(text) <= 18:  # fits SQLite's INTEGER
            query, arg = "version = ?", int(text)
        else:
            query, arg = "id = ?", id_or_version  # type: ignore[assignment]
        row = self._conn.execute(
            f"SELECT * FROM releases WHERE app_id = ? AND {query}", (app_id, arg)
        ).fetchone()
        if row is None:
            raise NotFound(
                f"Couldn't find release {id_or_version}. Run 'dynos releases' to list them."
            )
        return release_from_row(row)

    def slug_in_use(self, slug_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM releases WHERE slug_id = ?", (slug_id,))
        return row.fetchone() is not None

    # -- app settings -------------------------------------------------------------------------

    def app_settings(self, app_id: str) -> dict[str, object]:
        rows = self._conn.execute(
            "SELECT name, value FROM app_settings WHERE app_id = ?", (app_id,)
        ).fetchall()
        return {row["name"]: json.loads(row["value"]) for row in rows}

    def all_app_settings(self) -> dict[str, dict[str, object]]:
        """Every app's settings by app id, in one query (the manager reads them each tick)."""
        settings: dict[str, dict[str, object]] = {}
        for row in self._conn.execute("SELECT app_id, name, value FROM app_settings"):
            settings.setdefault(row["app_id"], {})[row["name"]] = json.loads(row["value"])
        return settings

    def set_app_setting(self, app_id: str, name: str, value: object) -> None:
        """Store ``value`` (JSON-able) under ``name``; None removes the setting."""
        if value is None:
            self._conn.execute(
                "DELETE FROM app_settings WHERE app_id = ? AND name = ?", (app_id, name)
            )
        else:
            self._conn.execute(
                "INSERT INTO app_settings (app_id, name, value) VALUES (?, ?, ?)"
                " ON CONFLICT (app_id, name) DO UPDATE SET value = excluded.value",
                (app_id, name, json.dumps(value)),
            )

    # -- app features -------------------------------------------------------------------------

    def app_feature(self, app_id: str, name: str) -> AppFeature:
        row = self._conn.execute(
            "SELECT * FROM app_features WHERE app_id = ? AND name = ?", (app_id, name)
        ).fetchone()
        if row is None:
            return AppFeature(app_id, name, False, None, None)
        created, updated = time_from_text(row["created_at"]), time_from_text(row["updated_at"])
        return AppFeature(app_id, name, bool(row["enabled"]), created, updated)

    def set_app_feature(self, app_id: str, name: str, enabled: bool) -> AppFeature:
        at = time_text(now())
        self._conn.execute(
            "INSERT INTO app_features (app_id, name, enabled, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (app_id, name) DO UPDATE"
            " SET enabled = excluded.enabled, updated_at = excluded.updated_at",
            (app_id, name, int(enabled), at, at),
        )
        return self.app_feature(app_id, name)

    # -- formation --------------------------------------------------------------------------

    def formation(self, app_id: str) -> list[Formation]:
        """The app's formation, ``web`` first, then by type."""
        rows = self._conn.execute(
            "SELECT * FROM formation WHERE app_id = ? ORDER BY type != 'web', type", (app_id,)
        ).fetchall()
        return [formation_from_row(row) for row in rows]

    def set_formation(self, app_id: str, type_: str, quantity: int, size: DynoSize | str) -> None:
        """Create or update one process type's entry. The table keeps the size's name; a name
        given here is looked up first (UserError for an unknown one), so that every name read
        back is one :func:`find_size` knows."""
        name = (size if isinstance(size, DynoSize) else find_size(size)).name
        at = time_text(now())
        self._conn.execute(
            "INSERT INTO formation (id, app_id, type, quantity, size, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (app_id, type) DO UPDATE SET quantity = excluded.quantity,"
            " size = excluded.size, updated_at = excluded.updated_at",
            (str(uuid.uuid4()), app_id, type_, quantity, name, at, at),
        )

    def delete_formation(self, app_id: str, type_: str) -> None:
        self._conn.execute("DELETE FROM formation WHERE app_id = ? AND type = ?", (app_id, type_))

    # -- add-ons ------------------------------------------------------------------------------

    def create_addon(
        self,
        app_id: str,
        name: str,
        *,
        service: str,
        plan: str,
        config_var: str,
        port: int,
        password: str,
    ) -> Addon:
        """Record a new add-on; Conflict when its name is taken."""
        at = now()
        addon = Addon(
            str(uuid.uuid4()), app_id, name, service, plan, config_var, port, password, at, at
        )
        try:
            self._conn.execute(
                "INSERT INTO addons (id, app_id, name, service, plan, config_var, port, password,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *(addon.id, app_id, name, service, plan, config_var, port, password),
                    *(time_text(at), time_text(at)),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"An add-on called {name} exists already: choose another name.") from exc
        return addon

    def list_addons(self, app_id: str | None = None) -> list[Addon]:
        """The add-ons of one app, or of every app, by name."""
        if app_id is None:
            rows = self._conn.execute("SELECT * FROM addons ORDER BY name").fetchall()
        else:
            rows = self._conn.execute(
                "SELECT * FROM addons WHERE app_id = ? ORDER BY name", (app_id,)
            ).fetchall()
        return [addon_from_row(row) for row in rows]

    def set_addon_port(self, addon_id: str, port: int, password: str | None = None) -> bool:
        """The add-on's new port (and password, when given); False if it is gone."""
        cursor = self._conn.execute(
            "UPDATE addons SET port = ?, password = COALESCE(?, password), updated_at = ? "
            "WHERE id = ?",
            (port, password, time_text(now()), addon_id),
        )
        return cursor.rowcount > 0

    def delete_addon(self, addon_id: str) -> None:
        self._conn.execute("DELETE FROM addons WHERE id = ?", (addon_id,))
