"""The SQLite schema, as an append-only list of migrations.

``PRAGMA user_version`` holds how many migrations a database has had; opening a database runs
the missing ones in one transaction each. Never edit a migration that has shipped: add one.
"""

from __future__ import annotations

import sqlite3

from dynos.errors import UserError

MIGRATIONS: tuple[str, ...] = (
    # 1: apps, their releases (each a snapshot of slug, Procfile and config) and the formation.
    """
    CREATE TABLE apps (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE releases (
        id          TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        version     INTEGER NOT NULL,
        description TEXT NOT NULL,
        slug_id     TEXT,
        processes   TEXT NOT NULL,  -- JSON {type: command}
        config      TEXT NOT NULL,  -- JSON {key: value}
        created_at  TEXT NOT NULL,
        UNIQUE (app_id, version)
    );
    CREATE TABLE formation (
        id          TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        quantity    INTEGER NOT NULL CHECK (quantity >= 0),
        size        TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        UNIQUE (app_id, type)
    );
    """,
    # 2: per-app platform settings (idle_after, request_timeout, health_check_path), which
    # Heroku keeps outside config vars because they steer the platform, not the app.
    """
    CREATE TABLE app_settings (
        app_id  TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name    TEXT NOT NULL,
        value   TEXT NOT NULL,  -- JSON
        PRIMARY KEY (app_id, name)
    );
    """,
    # 3: managed add-ons: a backing service the platform runs for an app (redis-server on a
    # loopback port with a password), and the config var that points the app at it.
    """
    CREATE TABLE addons (
        id          TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name        TEXT NOT NULL UNIQUE,
        service     TEXT NOT NULL,
        plan        TEXT NOT NULL,
        config_var  TEXT NOT NULL,
        port        INTEGER NOT NULL,
        password    TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    """,
    # 4: the release phase. A release's status (pending while its release command runs,
    # then succeeded or failed; every release before this one succeeded) and the secret of
    # its output_stream_url. ``release`` is no formation type any more: it used to become one.
    """
    ALTER TABLE releases ADD COLUMN status TEXT NOT NULL DEFAULT 'succeeded';
    ALTER TABLE releases ADD COLUMN output_key TEXT;
    ALTER TABLE releases ADD COLUMN updated_at TEXT;
    CREATE UNIQUE INDEX releases_output_key ON releases (output_key);
    DELETE FROM formation WHERE type = 'release';
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s schema up to date; return the schema version it now has."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise UserError(
            f"This database has schema v{version}, newer than this dynos knows "
            f"(v{len(MIGRATIONS)}): upgrade dynos before using this home."
        )
    for number in range(version, len(MIGRATIONS)):
        with conn:
            conn.executescript(f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1};")
    return len(MIGRATIONS)
