"""The managed Redis add-on end to end: a real redis-server, real dynos, real restarts."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from dynos.core.redis_plans import find_plan
from tests.integration.conftest import RunningServer, start_server, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (apt-get install redis-server)"
)

ENVECHO = Path(__file__).parent / "apps" / "envecho"
MB = 1024 * 1024


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
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        # A short-lived child (a dyno's shell, a build step) may be gone before its name is read.
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.name() == "redis-server":
                found.append(child)
    return found


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

        def restarted_with_the_url() -> bool:
            # Between the old dyno's stop and the new one's start the router answers H14.
            response = router.get("/")
            return response.status_code == 200 and response.json()["env"].get("REDIS_URL") == url

        wait_for(restarted_with_the_url)
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
        "dynos: Unknown add-on 'memcached': dynos provides redis and heroku-postgresql "
        "(dynos addons:create heroku-postgresql)."
    )
    with server.api() as api:
        assert len(api.get("/apps/plain/releases").json()) == 1
        assert api.get("/apps/plain/addons").json() == []


def resp(*args: bytes) -> bytes:
    """One command in Redis's protocol (any length, any bytes)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class RedisConnection:
    """A minimal client: AUTH with the URL's password, then one reply per command."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port and parts.password
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.buffer = b""
        assert self.command(b"AUTH", parts.password.encode()) == b"+OK"

    def command(self, *args: bytes) -> bytes:
        """The reply: a status or error line, or a bulk string's contents."""
        self.sock.sendall(resp(*args))
        line = self._line()
        if not line.startswith(b"$") or line == b"$-1":
            return line
        size = int(line[1:])
        while len(self.buffer) < size + 2:
            self.buffer += self.sock.recv(65536)
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "redis closed the connection"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def info(self, section: str) -> dict[str, str]:
        text = self.command(b"INFO", section.encode()).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def close(self) -> None:
        self.sock.close()


def addon_url(server: RunningServer, app: str) -> str:
    with server.api() as api:
        url: str = api.get(f"/apps/{app}/config-vars").json()["REDIS_URL"]
    return url


def test_storing_past_the_plan_gets_redis_oom_error_and_memory_stays_capped(
    server: RunningServer,
) -> None:
    server.create_app("hoarder")
    server.cli("addons:create", "redis", "-a", "hoarder")  # mini, Heroku's default: 25 MB
    plan = find_plan("mini")
    connection = RedisConnection(addon_url(server, "hoarder"))
    try:
        memory = connection.info("memory")
        assert memory["maxmemory"] == str(plan.maxmemory_bytes)
        assert memory["maxmemory_policy"] == "noeviction"
        replies = [connection.command(b"SET", b"k%d" % n, bytes(MB)) for n in range(60)]
        assert connection.command(b"GET", b"k0") == bytes(MB)  # nothing was evicted
    finally:
        connection.close()
    stored = replies.count(b"+OK")
    assert 10 <= stored < plan.memory_mb  # about 25 of 1 MB each, then only errors
    assert set(replies[stored:]) == {b"-OOM command not allowed when used memory > 'maxmemory'."}
    [process] = redis_processes(server)
    assert process.memory_info().rss < plan.memory_cap_bytes


@pytest.mark.skipif(os.geteuid() != 0, reason="add-on users and cgroups need root")
def test_redis_runs_as_its_own_user_in_its_own_capped_cgroup_out_of_the_dynos_reach(
    server: RunningServer,
) -> None:
    server.create_app("guarded")
    server.deploy("guarded", ENVECHO)
    server.cli(
        "addons:create", "heroku-redis:premium-0", "--name", "guarded-cache", "-a", "guarded"
    )
    plan = find_plan("premium-0")
    [process] = redis_processes(server)
    owner = pwd.getpwuid(process.uids().real)
    assert owner.pw_uid != 0 and owner.pw_name.startswith("dyno-addon-")
    groups = Path(f"/proc/{process.pid}/cgroup").read_text().splitlines()
    [memory] = [g.split(":", 2)[2] for g in groups if ":memory:" in g] or [groups[0][3:]]
    assert memory.endswith("/addon-guarded-cache")
    v1 = Path("/sys/fs/cgroup/memory") / memory.lstrip("/") / "memory.limit_in_bytes"
    v2 = Path("/sys/fs/cgroup") / memory.lstrip("/") / "memory.max"
    assert int((v1 if v1.exists() else v2).read_text()) == plan.memory_cap_bytes

    connection = RedisConnection(addon_url(server, "guarded"))
    try:
        assert connection.info("memory")["maxmemory"] == str(plan.maxmemory_bytes)
        assert connection.info("clients")["maxclients"] == str(plan.max_clients)
        # The app's password cannot lift the limits.
        assert connection.command(b"CONFIG", b"SET", b"maxmemory", b"0").startswith(b"-NOPERM")
        assert connection.command(b"ACL", b"SETUSER", b"default", b"+@all").startswith(b"-NOPERM")
    finally:
        connection.close()
    assert "premium-0" in server.cli("addons", "-a", "guarded").stdout

    # A dyno of the app runs as another user: it can neither kill the server nor read its data.
    attack = f"kill -9 {process.pid}; ls {server.home / 'addons'}"
    result = server.cli("run", "-a", "guarded", "--no-tty", attack, check=False)
    said = result.stdout + result.stderr
    # The home is closed to the dyno's user; under /tmp, as here, the dyno's private scratch
    # hides it altogether.
    hidden = "Permission denied" in said or "No such file or directory" in said
    assert "Operation not permitted" in said and hidden, said
    assert process.is_running()

    # Its /tmp and /dev/shm are its own, not the machine's, with its data still reachable.
    for shared in ("tmp", "dev/shm"):
        mine = os.stat(f"/proc/{process.pid}/root/{shared}").st_dev
        assert mine != os.stat(f"/{shared}").st_dev, shared
    assert Path(process.cwd()).parent == server.home / "addons"
