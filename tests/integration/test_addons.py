"""The managed Redis add-on end to end: a real redis-server, real dynos, real restarts."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from tests.integration.conftest import RunningServer, start_server, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (apt-get install redis-server)"
)

ENVECHO = Path(__file__).parent / "apps" / "envecho"


def redis(url: str, *command: str) -> bytes:
    """Send one command (after AUTH) to the Redis at ``url``; its raw answer line."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"AUTH {parts.password}\r\n{' '.join(command)}\r\n".encode())
        answer = b""
        while answer.count(b"\r\n") < 2 + command[0].upper().startswith("GET"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"+OK\r\n"), answer
    return answer[5:]


def redis_or_nothing(url: str, *command: str) -> bytes:
    """``redis(...)``, or b"" while nothing listens yet."""
    try:
        return redis(url, *command)
    except OSError:
        return b""


def redis_processes(server: RunningServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [p for p in children if p.name() == "redis-server"]


def test_redis_add_on_sets_redis_url_in_a_release_and_the_dynos_get_it(
    server: RunningServer,
) -> None:
    server.create_app("cache")
    server.deploy("cache", ENVECHO)
    said = server.cli("addons:create", "redis", "-a", "cache").stdout
    assert said.startswith("Creating redis on ⬢ cache... done\nCreated redis-")
    assert said.rstrip().endswith(" as REDIS_URL")
    with server.api() as api:
        url = api.get("/apps/cache/config-vars").json()["REDIS_URL"]
        releases = api.get("/apps/cache/releases").json()
        addons = api.get("/apps/cache/addons").json()
    assert releases[-1]["description"].startswith("Attach REDIS (@ref:redis-")
    assert [a["state"] for a in addons] == ["provisioned"]
    assert addons[0]["config_vars"] == ["REDIS_URL"]
    assert redis(url, "PING") == b"+PONG\r\n"
    with server.router("cache") as router:  # the web dyno restarted on the new release
        wait_for(lambda: router.get("/").json()["env"].get("REDIS_URL") == url)
    listing = server.cli("addons", "-a", "cache").stdout
    assert f"redis ({addons[0]['name']})" in listing and " └─ as REDIS" in listing


def test_a_dead_redis_is_restarted_and_logged_with_its_data(server: RunningServer) -> None:
    server.create_app("phoenix")
    server.cli("addons:create", "redis", "-a", "phoenix")
    with server.api() as api:
        url = api.get("/apps/phoenix/config-vars").json()["REDIS_URL"]
    redis(url, "SET", "greeting", "hello")
    [first] = redis_processes(server)
    first.kill()
    wait_for(lambda: [p.pid for p in redis_processes(server)] not in ([], [first.pid]))
    wait_for(lambda: b"hello" in redis_or_nothing(url, "GET", "greeting"), what="redis back")
    logs = server.logs("phoenix")
    assert "exited with status 137" in logs and "is up again" in logs


def test_add_ons_come_back_with_their_data_when_the_server_restarts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(home)
    try:
        first.create_app("keep")
        first.cli("addons:create", "redis", "-a", "keep")
        with first.api() as api:
            url = api.get("/apps/keep/config-vars").json()["REDIS_URL"]
        redis(url, "SET", "kept", "yes")
    finally:
        assert first.stop() == 0
    with pytest.raises(OSError):  # stopped with the server
        redis(url, "PING")
    second = start_server(home)
    try:
        wait_for(lambda: b"yes" in redis_or_nothing(url, "GET", "kept"), what="redis back")
    finally:
        assert second.stop() == 0


def test_destroy_asks_for_confirmation_then_removes_var_process_and_data(
    server: RunningServer,
) -> None:
    server.create_app("gone")
    server.cli("addons:create", "redis", "-a", "gone")
    with server.api() as api:
        [addon] = api.get("/apps/gone/addons").json()
    name = addon["name"]
    refused = server.cli("addons:destroy", name, "-a", "gone", check=False)
    assert refused.returncode == 1
    assert "deletes all its data" in refused.stderr and "--confirm gone" in refused.stderr
    assert redis_processes(server)
    said = server.cli("addons:destroy", name, "-a", "gone", "--confirm", "gone").stdout
    assert said == f"Destroying {name} on ⬢ gone... done\n"
    with server.api() as api:
        assert "REDIS_URL" not in api.get("/apps/gone/config-vars").json()
        assert api.get("/apps/gone/addons").json() == []
    assert redis_processes(server) == []
    assert not (server.home / "addons" / name).exists()


def test_unknown_add_on_is_one_clear_line_and_changes_nothing(server: RunningServer) -> None:
    server.create_app("plain")
    result = server.cli("addons:create", "memcached", "-a", "plain", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "dynos: Unknown add-on 'memcached': dynos provides redis (dynos addons:create redis)."
    )
    with server.api() as api:
        assert len(api.get("/apps/plain/releases").json()) == 1
        assert api.get("/apps/plain/addons").json() == []
