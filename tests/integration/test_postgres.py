"""The managed Postgres add-on end to end: a real cluster, real roles, real psql and pg_dump.

The cases share one server (its cluster's initdb takes seconds) and run in order; each makes
its own apps. The server caps every database at 12 MB (``--pg-storage-cap-mb``): an empty
database takes about 7.5 MB, so a test can cross the cap with a few MB of rows.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil
import pytest

from dynos.errors import PlatformError
from dynos.platform.postgres_server import find_bindir
from tests.integration.conftest import RunningServer, start_server, wait_for

try:
    BINDIR: Path | None = find_bindir()
except PlatformError:  # not installed
    BINDIR = None

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        BINDIR is None or shutil.which("psql") is None,
        reason="needs PostgreSQL (apt-get install postgresql)",
    ),
]

ROOT = os.geteuid() == 0
NOBODY = 65534
CAP_MB = 12


def psql(
    url: str, sql: str, *, sslmode: str = "require", database: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` with the credentials of ``url`` (on ``database`` instead of its own)."""
    parts = urlsplit(url)
    env = {
        **os.environ,
        "PGHOST": parts.hostname or "",
        "PGPORT": str(parts.port),
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": database or parts.path.lstrip("/"),
        "PGSSLMODE": sslmode,
        "PGCONNECT_TIMEOUT": "10",
    }
    command = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def query(url: str, sql: str) -> str:
    result = psql(url, sql)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def config(server: RunningServer, app: str) -> dict[str, str]:
    with server.api() as api:
        answer: dict[str, str] = api.get(f"/apps/{app}/config-vars").json()
        return answer


def create(server: RunningServer, app: str, *args: str) -> str:
    return server.cli("addons:create", *args, "-a", app).stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("postgres") / "home"
    running = start_server(home, "--stop-grace", "2", "--pg-storage-cap-mb", str(CAP_MB))
    yield running
    if running.process.poll() is None:
        running.stop()


def test_first_database_is_database_url_over_ssl_and_later_ones_get_a_color(
    server: RunningServer,
) -> None:
    server.create_app("pgfirst")
    said = create(server, "pgfirst", "heroku-postgresql")
    assert said.startswith("Creating heroku-postgresql on ⬢ pgfirst... done\nCreated postgresql-")
    assert said.rstrip().endswith(" as DATABASE_URL")
    url = config(server, "pgfirst")["DATABASE_URL"]
    parts = urlsplit(url)
    assert parts.scheme == "postgres" and parts.hostname == "127.0.0.1"
    assert query(url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t"
    refused = psql(url, "SELECT 1", sslmode="disable")  # Heroku's apps use sslmode=require
    assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stderr
    assert query(url, "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user") == "20"

    said = create(server, "pgfirst", "postgresql:standard-0")
    variables = config(server, "pgfirst")
    colored = [v for v in variables if v.startswith("HEROKU_POSTGRESQL_")]
    assert len(colored) == 1 and colored[0].endswith("_URL") and f"as {colored[0]}" in said
    second = variables[colored[0]]
    assert query(second, "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user") == "120"
    with server.api() as api:
        releases = api.get("/apps/pgfirst/releases").json()
        attachments = api.get("/apps/pgfirst/addon-attachments").json()
    assert releases[-1]["description"].startswith(f"Attach {colored[0][:-4]} (@ref:postgresql-")
    assert sorted(a["name"] for a in attachments) == sorted(["DATABASE", colored[0][:-4]])


def test_one_apps_role_can_neither_reach_nor_read_another_apps_database(
    server: RunningServer,
) -> None:
    for app in ("pgalice", "pgmallory"):
        server.create_app(app)
        create(server, app, "heroku-postgresql")
    alice, mallory = (
        config(server, "pgalice")["DATABASE_URL"],
        config(server, "pgmallory")["DATABASE_URL"],
    )
    query(alice, "CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('alice''s')")
    alices_db = urlsplit(alice).path.lstrip("/")
    for database in (alices_db, "postgres", "template1"):
        reached = psql(mallory, "SELECT 1", database=database)
        assert reached.returncode != 0 and "no pg_hba.conf entry" in reached.stderr, database
    # Behind pg_hba, the database itself refuses other roles: CONNECT is revoked from PUBLIC.
    privilege = f"SELECT has_database_privilege('{alices_db}', 'CONNECT')"
    assert query(mallory, privilege) == "f"
    assert query(alice, privilege) == "t"
    assert (
        query(
            mallory,
            "SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles "
            "WHERE rolname = current_user",
        )
        == "f"
    )


def test_past_the_storage_cap_writes_are_refused_and_the_log_says_so(
    server: RunningServer,
) -> None:
    server.create_app("pgfull")
    create(server, "pgfull", "heroku-postgresql:essential-0")
    url = config(server, "pgfull")["DATABASE_URL"]
    query(url, "CREATE TABLE big (payload text)")
    # 8 MB of rows that do not compress (random md5 text), past the 12 MB cap.
    query(
        url,
        "INSERT INTO big SELECT string_agg(md5(random()::text), '') FROM "
        "generate_series(1, 64) g, generate_series(1, 4000) r GROUP BY r",
    )
    info = server.cli("pg:info", "-a", "pgfull").stdout
    assert "Status:      Over Plan Capacity: Access Restricted" in info, info
    refused = psql(url, "INSERT INTO big VALUES ('more')")
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    refused = psql(url, "CREATE TABLE more (x int)")
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    assert query(url, "SELECT count(*) > 0 FROM big") == "t"  # reads still work
    assert "is over its plan's storage" in server.logs("pgfull")
    assert "app[heroku-postgres]" in server.logs("pgfull")

    query(url, "TRUNCATE big")  # as on Heroku: DELETE and TRUNCATE still work
    info = server.cli("pg:info", "-a", "pgfull").stdout
    assert "Status:      Available" in info, info
    assert "is within its plan's storage again" in server.logs("pgfull")
    query(url, "INSERT INTO big VALUES ('fits again')")


def test_pg_psql_backups_capture_download_and_restore(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("pgback")
    create(server, "pgback", "heroku-postgresql")
    said = server.cli(
        "pg:psql",
        "-a",
        "pgback",
        "-c",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept'); SELECT v FROM t",
    ).stdout
    assert "kept" in said
    captured = server.cli("pg:backups:capture", "-a", "pgback")
    assert "Backup b001 done" in captured.stdout
    listing = server.cli("pg:backups", "-a", "pgback").stdout
    assert "b001" in listing and "Completed" in listing and "DATABASE" in listing

    url = config(server, "pgback")["DATABASE_URL"]
    query(url, "DELETE FROM t; INSERT INTO t VALUES ('changed'); CREATE TABLE later (x int)")
    refused = server.cli("pg:backups:restore", "b001", "-a", "pgback", check=False)
    assert refused.returncode == 1 and "--confirm pgback" in refused.stderr
    assert query(url, "SELECT v FROM t") == "changed"
    server.cli("pg:backups:restore", "b001", "-a", "pgback", "--confirm", "pgback")
    assert query(url, "SELECT v FROM t") == "kept"

    target = tmp_path / "latest.dump"
    server.cli("pg:backups:download", "-a", "pgback", "-o", str(target))
    assert target.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    listed = subprocess.run(
        [str(BINDIR / "pg_restore"), "--list", str(target)], capture_output=True, text=True
    )
    assert "TABLE public t" in listed.stdout

    missing = server.cli("pg:backups:download", "b009", "-a", "pgback", check=False)
    assert missing.returncode == 1 and "No backup b009" in missing.stderr
    bad = server.cli("pg:backups:download", "b1;x", "-a", "pgback", check=False)
    assert bad.returncode == 1 and "Invalid backup" in bad.stderr


def test_the_cluster_runs_sandboxed_and_data_survives_a_server_restart(
    server: RunningServer,
) -> None:
    server.create_app("pglong")
    create(server, "pglong", "heroku-postgresql")
    url = config(server, "pglong")["DATABASE_URL"]
    query(url, "CREATE TABLE t (v text); INSERT INTO t VALUES ('durable')")
    data = server.home / "postgres" / "data"
    postmaster = psutil.Process(int((data / "postmaster.pid").read_text().split()[0]))
    assert postmaster.name() == "postgres"
    assert server.process.pid in [p.pid for p in postmaster.parents()]  # the server's child
    owner = pwd.getpwuid(postmaster.uids().real).pw_name
    if ROOT:  # its own unprivileged user, not root and not any app's
        assert owner.startswith("dyno-addon-")

    assert server.stop() == 0
    assert not postmaster.is_running()
    if ROOT:  # taken back by root while no cluster runs: the user goes with the server
        assert data.stat().st_uid == 0
    restarted = start_server(server.home, "--stop-grace", "2", "--pg-storage-cap-mb", str(CAP_MB))
    server.process, server.api_url, server.token = (
        restarted.process,
        restarted.api_url,
        restarted.token,
    )
    server.router_port = restarted.router_port
    wait_for(lambda: psql(url, "SELECT 1").returncode == 0, timeout=60)
    assert query(url, "SELECT v FROM t") == "durable"


def test_destroy_drops_the_database_after_confirmation(server: RunningServer) -> None:
    server.create_app("pggone")
    said = create(server, "pggone", "heroku-postgresql")
    name = said.split("Created ")[1].split()[0]
    url = config(server, "pggone")["DATABASE_URL"]
    refused = server.cli("addons:destroy", name, "-a", "pggone", check=False)
    assert refused.returncode == 1 and "--confirm pggone" in refused.stderr
    assert psql(url, "SELECT 1").returncode == 0
    server.cli("addons:destroy", name, "-a", "pggone", "--confirm", "pggone")
    assert "DATABASE_URL" not in config(server, "pggone")
    gone = psql(url, "SELECT 1")
    assert gone.returncode != 0 and "password authentication failed" in gone.stderr
    # Destroying an app drops its databases too.
    create(server, "pggone", "heroku-postgresql")
    url = config(server, "pggone")["DATABASE_URL"]
    with server.api() as api:
        api.delete("/apps/pggone").raise_for_status()
    wait_for(lambda: psql(url, "SELECT 1").returncode != 0)


def test_unknown_plans_and_names_are_refused_and_change_nothing(server: RunningServer) -> None:
    server.create_app("pgbad")
    bad = server.cli("addons:create", "heroku-postgresql:huge-9", "-a", "pgbad", check=False)
    assert bad.returncode == 1 and "Unknown Postgres plan 'huge-9'" in bad.stderr
    assert "essential-0" in bad.stderr
    bad = server.cli(
        "addons:create", "postgresql", "--name", "Robert'); DROP", "-a", "pgbad", check=False
    )
    assert bad.returncode == 1 and "Invalid add-on name" in bad.stderr
    assert config(server, "pgbad") == {}
    with server.api() as api:
        assert api.get("/apps/pgbad/addons").json() == []


@pytest.mark.skipif(not ROOT, reason="runs the server as another user, which needs root")
def test_a_server_without_root_runs_postgres_as_its_own_user(tmp_path: Path) -> None:
    running = start_server(tmp_path / "home", "--stop-grace", "2", user=NOBODY)
    try:
        running.create_app("pgnoroot")
        running.cli("addons:create", "heroku-postgresql", "-a", "pgnoroot")
        url = config(running, "pgnoroot")["DATABASE_URL"]
        assert query(url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t"
        owners = set()
        for p in psutil.Process(running.process.pid).children(recursive=True):
            # A backend that served the query above may end while this looks: skip it.
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.name() == "postgres":
                    owners.add(p.uids().real)
        assert owners == {NOBODY}
    finally:
        running.stop()


@pytest.mark.skipif(not ROOT, reason="the cluster's own user exists only as root")
def test_data_survives_a_killed_server_whose_cluster_user_goes(tmp_path: Path) -> None:
    """A killed server's users go, with every file they own, when the next server starts:
    the cluster's data, its user's while it ran, must not go with them."""
    home = tmp_path / "home"
    running = start_server(home, "--stop-grace", "2")
    running.create_app("pgkilled")
    running.cli("addons:create", "heroku-postgresql", "-a", "pgkilled")
    url = config(running, "pgkilled")["DATABASE_URL"]
    query(url, "CREATE TABLE t (v text); INSERT INTO t VALUES ('survives')")
    assert (home / "postgres" / "data").stat().st_uid != 0  # its user's while it runs
    running.process.kill()
    running.process.wait()
    again = start_server(home, "--stop-grace", "2")
    try:
        wait_for(lambda: psql(url, "SELECT 1").returncode == 0, timeout=60)
        assert query(url, "SELECT v FROM t") == "survives"
    finally:
        again.stop()


def test_a_cluster_whose_port_was_taken_moves_and_the_apps_get_new_urls(tmp_path: Path) -> None:
    """The port is picked free once and kept; another process may hold it at a later start."""
    home = tmp_path / "home"
    running = start_server(home, "--stop-grace", "2")
    try:
        running.create_app("pgmoved")
        running.cli("addons:create", "heroku-postgresql", "-a", "pgmoved")
        old = config(running, "pgmoved")["DATABASE_URL"]
        query(old, "CREATE TABLE t (v text); INSERT INTO t VALUES ('moved along')")
    finally:
        running.stop()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", urlsplit(old).port or 0))
        squatter.listen()
        again = start_server(home, "--stop-grace", "2")
        try:
            wait_for(lambda: config(again, "pgmoved")["DATABASE_URL"] != old, timeout=60)
            new = config(again, "pgmoved")["DATABASE_URL"]
            assert urlsplit(new).password == urlsplit(old).password
            assert query(new, "SELECT v FROM t") == "moved along"
            with again.api() as api:
                releases = api.get("/apps/pgmoved/releases").json()
            assert releases[-1]["description"] == "Update DATABASE by heroku-postgresql"
        finally:
            again.stop()


def test_bad_input_to_the_postgres_and_attachment_routes_is_a_clear_error(
    server: RunningServer,
) -> None:
    server.create_app("pginput")
    create(server, "pginput", "heroku-postgresql")
    base = "/apps/pginput/addons/DATABASE"
    with server.api() as api:
        cases = [
            api.post("/actions/addons/resolve", json={"addon": 5}),
            api.post("/actions/addon-attachments/resolve", json={"addon_attachment": ""}),
            api.post("/actions/addons/resolve", json={"addon": "DATABASE", "app": ["x"]}),
            api.post("/addon-attachments", json={"addon": "x", "app": "pginput"}),
            api.post(f"{base}/backups/latest/restore", json={"confirm": "other"}),
            api.post(f"{base}/backups/b1%27;/restore", json={"confirm": "pginput"}),
            api.get(f"{base}/backups/0/download"),
        ]
        for response in cases:
            assert response.status_code == 422, response.text
            assert response.json()["id"] == "invalid_params"
        missing = api.get("/apps/pginput/addons/HEROKU_POSTGRESQL_NONE/postgres")
        assert missing.status_code == 404
        assert api.get(f"{base}/backups/latest").status_code == 404  # none captured yet
        resolved = api.post("/actions/addons/resolve", json={"addon": "DATABASE", "app": "pginput"})
        assert [a["addon_service"]["name"] for a in resolved.json()] == ["heroku-postgresql"]
