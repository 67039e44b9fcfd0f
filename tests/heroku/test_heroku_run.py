"""The real heroku CLI's attached ``heroku run``: Heroku's rendezvous protocol over TLS to the
dyno's ``attach_url``, the certificate verified against the platform CA (the CLI is given it
with ``NODE_EXTRA_CA_CERTS``, as a user would; no check is turned off). An interactive shell
on a pseudo-terminal, pipes without one, the exit status passed through, and a client that
never connects."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, wait_for
from tests.heroku.conftest import Heroku

pytestmark = pytest.mark.timeout(300)

ENVECHO = Path(__file__).parents[1] / "integration" / "apps" / "envecho"
APP = "herokurun"


@pytest.fixture(scope="module")
def trusting(heroku: Heroku, server: RunningServer) -> Heroku:
    """The CLI, trusting the platform CA; the app deployed."""
    heroku("apps:create", APP)
    server.deploy(APP, ENVECHO)
    ca = server.home / "tls" / "ca.pem"
    return Heroku(heroku.bin, {**heroku.env, "NODE_EXTRA_CA_CERTS": str(ca), "TERM": "xterm"})


class Terminal:
    """A command on a pseudo-terminal of its own, read and typed at as a user would."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int, rows: int) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal and stdio
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, env)
        self.seen = b""

    def read_until(self, wanted: bytes, timeout: float = 60.0, after: int = 0) -> bytes:
        """Read until ``wanted`` is in what was seen from offset ``after`` on."""
        deadline = time.monotonic() + timeout
        while wanted not in self.seen[after:]:
            assert time.monotonic() < deadline, f"never saw {wanted!r} in {self.seen!r}"
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the command exited
                    data = b""
                assert data, f"the command ended before {wanted!r}: {self.seen!r}"
                self.seen += data
        return self.seen

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 60.0) -> int:
        """The exit status; what it still writes is read meanwhile (into ``seen``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if select.select([self.fd], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.fd, 4096)
        self.kill()
        raise AssertionError(f"the command did not exit: {self.seen!r}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)


@contextlib.contextmanager
def on_a_terminal(heroku: Heroku, *args: str, cols: int, rows: int) -> Iterator[Terminal]:
    terminal = Terminal([str(heroku.bin), *args], heroku.env, cols, rows)
    try:
        yield terminal
    finally:
        terminal.kill()
        os.close(terminal.fd)


def run_dynos(server: RunningServer) -> dict[str, str]:
    with server.api() as api:
        dynos = api.get(f"/apps/{APP}/dynos").json()
    return {d["name"]: d["state"] for d in dynos if d["type"] == "run"}


def test_heroku_run_bash_is_an_interactive_shell_that_passes_its_exit_status_through(
    trusting: Heroku, server: RunningServer
) -> None:
    with on_a_terminal(trusting, "run", "bash", "-a", APP, cols=97, rows=31) as terminal:
        terminal.read_until(b"up, run.")
        terminal.read_until(b"$ ")
        terminal.type("echo the answer is $((6 * 7))\r")
        terminal.read_until(b"the answer is 42")
        terminal.type("stty size; tty\r")  # a real terminal, of the CLI's window size
        terminal.read_until(b"31 97")
        terminal.read_until(b"/dev/pts/")
        mark = terminal.seen.index(b"/dev/pts/")
        # Type at the next prompt, not ahead of it: a line typed while the shell switches
        # the terminal between its own mode and the command's was once echoed without its
        # newline and never reached cat (a clean-clone CI run).
        terminal.read_until(b"$ ", after=mark)
        # ^D ends cat, as on any terminal, and the shell reads on. Type into cat only once
        # the echo before it has printed: readline says "\x1b[?2004l" *before* it gives the
        # terminal back its cooked mode, and a line typed in that gap arrived unechoed and
        # without its newline, so cat never read it (CI, twice).
        terminal.type("echo cat runs $((2 + 2)); cat\r")
        terminal.read_until(b"cat runs 4", after=mark)
        mark = len(terminal.seen)
        terminal.type("into cat\r")
        terminal.read_until(b"into cat\r\r\ninto cat", after=mark)  # the echo, then cat's
        terminal.type("\x04")
        terminal.type("echo still $((1 + 1))\r")
        terminal.read_until(b"still 2")
        terminal.type("exit 3\r")
        assert terminal.wait() == 3
    assert b"Process exited with code 3" in terminal.seen
    assert b"heroku-command-exit-status" not in terminal.seen  # the marker is the CLI's
    wait_for(lambda: run_dynos(server) == {}, what="the one-off dyno to be gone")


def test_a_shell_that_exits_cleanly_exits_0(trusting: Heroku) -> None:
    with on_a_terminal(trusting, "run", "bash", "-a", APP, cols=80, rows=24) as terminal:
        terminal.read_until(b"$ ")
        terminal.type("exit\r")
        assert terminal.wait() == 0
    assert b"Process exited" not in terminal.seen


def test_heroku_run_without_a_tty_relays_output_and_status(trusting: Heroku) -> None:
    # Three times: the CLI sends its ^D when its (empty) stdin ends, often after so quick a
    # command has exited; the listener waits for it before closing (else: EPIPE, exit 1).
    for _ in range(3):
        result = subprocess.run(
            [str(trusting.bin), "run", "echo out; echo err >&2; exit 4", "-a", APP],
            stdin=subprocess.DEVNULL,
            env=trusting.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 4, result
        assert sorted(result.stdout.splitlines()) == ["err", "out"]  # no pty: both streams


def test_heroku_run_without_a_tty_pipes_stdin_to_the_command(trusting: Heroku) -> None:
    result = subprocess.run(
        [str(trusting.bin), "run", "--no-tty", "-a", APP, "--", "tr", "a-z", "A-Z"],
        input="piped through\n",
        env=trusting.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result
    assert result.stdout == "PIPED THROUGH\n"  # the CLI's ^D at the end closed its stdin


def test_exit_code_flag_works_as_on_heroku(trusting: Heroku) -> None:
    # -x: the command's own shell prints the marker too; one status comes out either way.
    result = trusting("run", "-x", "echo hi; false", "-a", APP, check=False)
    assert result.returncode == 1 and result.stdout == "hi\n", result


def test_a_cli_that_does_not_trust_the_ca_is_refused_and_its_dyno_stopped_within_30s(
    heroku: Heroku, trusting: Heroku, server: RunningServer
) -> None:
    result = heroku("run", "echo never", "-a", APP, check=False)  # no NODE_EXTRA_CA_CERTS
    assert result.returncode != 0
    assert "certificate" in result.stderr, result.stderr  # verified: never turned off
    assert "never" not in result.stdout
    with server.api() as api:
        [waiting] = [d for d in api.get(f"/apps/{APP}/dynos").json() if d["type"] == "run"]
    assert waiting["state"] == "starting", waiting
    # The 30 s count from the dyno's creation, not from the CLI's start (Node's start-up
    # alone took seconds in a loaded run).
    created = datetime.fromisoformat(waiting["created_at"].replace("Z", "+00:00"))
    wait_for(lambda: run_dynos(server) == {}, timeout=40, what="the unattached dyno to go")
    assert (datetime.now(UTC) - created).total_seconds() < 30
    logs = trusting("logs", "-a", APP, "-n", "200").stdout
    assert "Error R13 (Attach error) -> Failed to attach to process" in logs
    said = (server.home.parent / f"{server.home.name}-server.log").read_text()
    assert f"{waiting['name']} of app {APP} stopped: no client attached within 25 s" in said
