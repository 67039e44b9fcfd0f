"""One-off dynos end to end: `dynos run` attached with a pty and with pipes, run:detached."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from dynos.testing.harness import dyno_states
from tests.integration.conftest import RunningServer, each_test, started, wait_for

ENVECHO = Path(__file__).parent / "apps" / "envecho"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: each test uses apps of its own and looks only at them."""
    yield from started(tmp_path_factory.mktemp("one-off") / "home", "--stop-grace", "5")


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


def deployed(server: RunningServer, app: str) -> None:
    server.create_app(app)
    server.deploy(app, ENVECHO)


def read_until(fd: int, wanted: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        assert time.monotonic() < deadline, f"never saw {wanted!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # EIO: the CLI exited
                break
    return seen


def wait_exit(pid: int, fd: int, timeout: float = 20.0) -> int:
    """The exit status of the child ``pid``, whose terminal ``fd`` is read meanwhile (it
    drains its output before it exits); killed, and the test failed, after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if select.select([fd], [], [], 0.05)[0]:
            with contextlib.suppress(OSError):
                os.read(fd, 4096)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("dynos run did not exit")


def test_dynos_run_bash_is_interactive_on_a_tty_and_exits_with_its_status(
    server: RunningServer,
) -> None:
    deployed(server, "shell")
    env = {**os.environ, "DYNOS_HOME": str(server.home), "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:  # the CLI, on a terminal as a user would run it
        os.execve(
            sys.executable, [sys.executable, "-m", "dynos", "run", "-a", "shell", "bash"], env
        )
    try:
        read_until(fd, b"$ ")  # bash's prompt: typed-ahead input could be flushed before
        os.write(fd, b"tty; echo $((6*7))\r")
        said = read_until(fd, b"42\r\n")
        assert b"/dev/pts/" in said  # the dyno's bash runs on a terminal of its own
        os.write(fd, b"exit 5\r")
        read_until(fd, b"exit\r\n")
        status = wait_exit(pid, fd)
    finally:
        os.close(fd)
    assert status == 5
    logs = server.logs("shell")
    assert "Process exited with status 5" in logs
    assert "State changed from up to complete" in logs


def test_dynos_run_without_a_tty_pipes_stdin_stdout_and_stderr(server: RunningServer) -> None:
    deployed(server, "piped")
    env = {**os.environ, "DYNOS_HOME": str(server.home)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynos",
            "run",
            "-a",
            "piped",
            "-e",
            "WHO=you",
            "--",
            "tr a-z A-Z; echo $WHO $DYNO >&2; exit 3",
        ],
        input="from stdin\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout == "FROM STDIN\n"
    assert "you run." in result.stderr
    assert "Running" in result.stderr  # the status line stays off stdout


def test_attach_websocket_carries_input_output_and_the_exit_status(server: RunningServer) -> None:
    deployed(server, "wsapp")
    with server.api() as api:
        response = api.post(
            "/apps/wsapp/dynos", json={"command": "cat", "attach": True, "force_no_tty": True}
        )
    assert response.status_code == 201
    dyno = response.json()
    assert dyno["state"] == "starting" and dyno["attach_websocket_url"].startswith("ws://")
    with connect(dyno["attach_websocket_url"], proxy=None) as socket:
        socket.send(b"ping\n")
        socket.send(json.dumps({"eof": True}))
        assert socket.recv(timeout=20) == b"\x01ping\n"
        assert json.loads(socket.recv(timeout=20)) == {"exit": 0}
    with connect(dyno["attach_websocket_url"], proxy=None) as again:  # used: the dyno is gone
        assert "error" in json.loads(again.recv(timeout=20))


def test_attach_websocket_survives_bad_control_frames(server: RunningServer) -> None:
    """A resize past the kernel's 16-bit window used to kill the socket's input task with a
    traceback: the dyno then got no more input, nor a hang-up when its client left."""
    deployed(server, "wsbad")
    with server.api() as api:
        response = api.post(
            "/apps/wsbad/dynos", json={"command": "read a; stty size; cat", "attach": True}
        )
    assert response.status_code == 201, response.text
    url = response.json()["attach_websocket_url"]
    with connect(url, proxy=None) as socket:
        socket.send(json.dumps({"resize": [70000, 24]}))
        socket.send(json.dumps({"resize": [-1, 2**70]}))
        socket.send("[" * 100_000)  # past the JSON parser's depth
        socket.send(b"\r")
        seen = b""
        while b"9999 1" not in seen:  # rows, cols: the last resize, within 1..9999
            try:
                seen += socket.recv(timeout=20)
            except TimeoutError:
                raise AssertionError(f"{seen!r} {server.log_tail()}") from None
    # The client left while the dyno (cat) is silent: the input task hangs it up.
    one_offs = lambda: [d for d in dyno_states(server, "wsbad") if d.startswith("run.")]  # noqa: E731
    wait_for(lambda: one_offs() == [], what="wsbad's one-off to end", timeout=30)


def test_run_detached_logs_its_output_shows_first_in_ps_and_ps_stop_ends_it(
    server: RunningServer,
) -> None:
    deployed(server, "batch")
    said = server.cli("run:detached", "-a", "batch", "echo started; sleep 60").stdout
    assert "Running echo started; sleep 60 on ⬢ batch... done, run." in said
    name = said.split("done, ")[1].split()[0]
    wait_for(
        lambda: f"app[{name}]: started" in server.cli("logs", "-a", "batch", "-d", name).stdout
    )
    ps = server.cli("ps", "-a", "batch").stdout.splitlines()
    assert ps[0] == "=== run: one-off processes (1)"
    assert ps[1].startswith(f"{name} (Standard-1X): up ") and ps[1].endswith(
        ": echo started; sleep 60"
    )
    server.cli("ps:stop", "-a", "batch", name)
    wait_for(lambda: "run." not in server.cli("ps", "-a", "batch").stdout, what="one-off gone")
    assert "web.1" in server.cli("ps", "-a", "batch").stdout  # nothing else stopped


def test_run_against_an_app_with_nothing_deployed_is_one_clear_line(
    server: RunningServer,
) -> None:
    server.create_app("bare")
    result = server.cli("run", "-a", "bare", "bash", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("dynos:")]
    assert errors == [
        "dynos: bare has no release to run a command in: deploy it first (dynos deploy -a bare)."
    ]
    with server.api() as api:
        assert api.get("/apps/bare/dynos").json() == []
