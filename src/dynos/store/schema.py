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
    # 5: apps' own TLS certificates (the Platform API's sni-endpoints; ACME's too, by source).
    # The private key stays in this file (the server's only, 0600) and in <home>/tls/own/.
    """
    CREATE TABLE sni_endpoints (
        id                TEXT PRIMARY KEY,
        app_id            TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name              TEXT NOT NULL UNIQUE,
        source            TEXT NOT NULL,  -- own (certs:add) or acm (ACME)
        certificate_chain TEXT NOT NULL,  -- PEM, the leaf first
        private_key       TEXT NOT NULL,  -- PEM, never in an answer or a log
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    );
    CREATE INDEX sni_endpoints_app ON sni_endpoints (app_id);
    """,
    # 6: automatic certificate management (core/acm.py): a row per app with ACM on, its
    # status and the names and dates of the certificate it got (served as an sni-endpoint
    # of source acm, migration 5).
    """
    CREATE TABLE acm (
        app_id      TEXT PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
        status      TEXT NOT NULL,
        reason      TEXT,
        failures    INTEGER NOT NULL DEFAULT 0,
        retry_at    TEXT,
        hosts       TEXT NOT NULL DEFAULT '[]',  -- JSON: the names the certificate covers
        not_before  TEXT,
        not_after   TEXT,
        updated_at  TEXT NOT NULL
    );
    """,
    # 7: custom domains: more hostnames the router sends to an app. A hostname belongs to one
    # app at most (stored lowercase, without a trailing dot: core/hostnames.py), and goes
    # with its app.
    """
    CREATE TABLE domains (
        id          TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        hostname    TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX domains_app ON domains (app_id);
    """,
    # 8: app features (Heroku's labs switches, core/features.py): a row once an app changed
    # one; a feature without a row is off.
    """
    CREATE TABLE app_features (
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (app_id, name)
    );
    """,
    # 9: autoscaling policies (core/autoscaling.py's, as JSON), one per process type at most;
    # a type without a row is scaled by hand only.
    """
    CREATE TABLE autoscaling (
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        policy      TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (app_id, type)
    );
    """,
    # 10: log drains: where an app's log lines are also sent (core/drains.py checks the URL);
    # the token is the drain's name in what it receives.
    """
    CREATE TABLE log_drains (
        id          TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        url         TEXT NOT NULL,
        token       TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        UNIQUE (app_id, url)
    );
    """,
    # 11: the certificate a domain chose (Heroku's domain ``sni_endpoint``: domains:add
    # --cert, domains:update --cert, certs:add's question), by hostname: the app's own too.
    # A domain without a row is served by platform/certificates.py's rule (core.assign).
    """
    CREATE TABLE domain_certificates (
        app_id          TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        hostname        TEXT NOT NULL,
        sni_endpoint_id TEXT NOT NULL REFERENCES sni_endpoints(id) ON DELETE CASCADE,
        PRIMARY KEY (app_id, hostname)
    );
    CREATE INDEX domain_certificates_endpoint ON domain_certificates (sni_endpoint_id);
    """,
    # 12: metrics (core/metrics.py): a period of one app's process type, a minute (step 60,
    # kept 24 h) or ten (step 600, kept 7 days), as JSON sums; and the events on their plots.
    """
    CREATE TABLE metric_periods (
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        step        INTEGER NOT NULL CHECK (step IN (60, 600)),
        at          INTEGER NOT NULL,  -- the period's start, epoch seconds
        data        TEXT NOT NULL,
        PRIMARY KEY (app_id, type, step, at)
    );
    CREATE INDEX metric_periods_age ON metric_periods (step, at);
    CREATE TABLE metric_events (
        id          INTEGER PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        at          REAL NOT NULL,
        kind        TEXT NOT NULL,
        message     TEXT NOT NULL
    );
    CREATE INDEX metric_events_app ON metric_events (app_id, at);
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
