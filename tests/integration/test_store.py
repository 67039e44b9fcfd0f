"""The state database under a real server: a lock held by another process, a damaged file,
backups and their restore."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from dynos.testing.harness import RunningServer, start_server, wait_for_dynos

ENVECHO = Path(__file__).parent / "apps" / "envecho"


def test_a_locked_database_gets_a_json_503_while_the_router_keeps_answering(
    server: RunningServer,
) -> None:
    server.create_app("locked")
    server.deploy("locked", ENVECHO)
    wait_for_dynos(server, "locked", {"web.1": "up"})
    written: dict[str, httpx.Response] = {}

    def write() -> None:
        with server.api() as api:
            written["config"] = api.patch("/apps/locked/config-vars", json={"WRITTEN": "1"})

    holder = sqlite3.connect(server.home / "dynos.db", isolation_level=None, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")  # what an sqlite3 shell in a transaction does
    latencies = []
    try:
        writer = threading.Thread(target=write)
        writer.start()
        with server.router("locked") as router:
            while writer.is_alive() or len(latencies) < 5:
                started = time.monotonic()
                assert router.get("/").status_code == 200
                latencies.append(time.monotonic() - started)
        writer.join()
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    # Before: one API write held the event loop for SQLite's 5 s busy wait, and with it the
    # router of every app. Generous bounds: the machine is shared.
    assert max(latencies) < 1.5, latencies
    response = written["config"]
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["id"] == "unavailable" and "locked by another process" in error["message"]
    with server.api() as api:
        assert "WRITTEN" not in api.get("/apps/locked/config-vars").json()  # nothing changed
        retried = api.patch("/apps/locked/config-vars", json={"WRITTEN": "1"})
        assert retried.status_code == 200, retried.text


def start_on(home: Path) -> subprocess.CompletedProcess[str]:
    """``dynos server`` on ``home`` when it is expected not to start."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "dynos", "server", "--home", str(home)),
            *("--api-port", "0", "--router-port", "0", "--router-host", "127.0.0.1"),
            *("--rendezvous-port", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def damage(database: Path) -> None:
    with database.open("r+b") as file:  # the reproduction of issue 11: garbage in the header
        file.write(b"garbage" * 10)


def test_a_damaged_database_stops_the_server_in_one_line_naming_the_newest_backup(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    first = start_server(home)
    try:
        first.create_app("precious")
    finally:
        assert first.stop() == 0
    damage(home / "dynos.db")
    refused = start_on(home)
    assert refused.returncode == 1
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert len(lines) == 1, lines  # before: a 30-line traceback
    assert lines[0].startswith(f"dynos: The database {home / 'dynos.db'} is damaged (file is not")
    (backup,) = (home / "backups").iterdir()  # the one taken at start
    assert f"dynos server:restore {backup} --home {home}" in lines[0]


def test_backups_follow_the_schedule_and_a_restore_brings_the_state_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(home, "--backup-every", "0.2", "--backup-keep", "2")
    try:
        first.create_app("precious")
        said = first.cli("server:backup").stdout
        assert said.startswith(f"Backed up {home / 'dynos.db'} to ")
        manual = Path(said.split(" to ")[1].strip())
        for name in ("extra-one", "extra-two", "extra-three"):
            first.create_app(name)
            time.sleep(0.4)  # a scheduled backup after each change
        refused = first.cli("server:restore", str(manual), check=False)
        assert refused.returncode == 1
        assert f"pid {first.process.pid}" in refused.stderr and "stop the server" in refused.stderr
        second = start_on(home)
        assert second.returncode == 1 and "Another dynos process" in second.stderr
    finally:
        assert first.stop() == 0
    kept = sorted(p.name for p in (home / "backups").iterdir())
    assert manual.name in kept
    assert len([n for n in kept if not n.endswith("-manual.db")]) == 2  # --backup-keep

    damage(home / "dynos.db")
    restored = first.cli("server:restore", str(manual))
    assert f"Restored {home / 'dynos.db'} from {manual}" in restored.stdout
    third = start_server(home)
    try:
        with third.api() as api:
            assert [a["name"] for a in api.get("/apps").json()] == ["precious"]
    finally:
        assert third.stop() == 0
