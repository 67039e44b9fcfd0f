"""Attached dynos through the local backend: real processes with a pty or pipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynos.backends.attach import STDERR, STDOUT, Terminal
from dynos.backends.base import DynoSpec
from dynos.backends.local import LocalBackend
from dynos.core.sizes import DEFAULT_SIZE

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both event loops: the server runs uvloop, whose fork hooks run in another order."""
    return request.param


class Events:
    """The manager's part: hand the exit status to the dyno's terminal."""

    def __init__(self) -> None:
        self.terminals: dict[str, Terminal] = {}
        self.lines: list[str] = []

    def dyno_output(self, key: str, line: str) -> None:
        self.lines.append(line)

    def dyno_up(self, key: str) -> None:
        pass

    def dyno_exited(self, key: str, status: int) -> None:
        self.terminals[key].finish(status)

    def dyno_boot_timeout(self, key: str) -> None:
        pass

    def dyno_oom_killed(self, key: str) -> None:
        pass


async def attached(tmp_path: Path, command: str, *, tty: bool) -> tuple[Terminal, Events]:
    events = Events()
    terminal = Terminal(tty=tty, cols=100, rows=30)
    events.terminals["k"] = terminal
    spec = DynoSpec(
        "k",
        "app",
        "run.1234",
        command,
        tmp_path,
        {"PATH": "/usr/bin:/bin"},
        None,
        DEFAULT_SIZE,
        terminal=terminal,
    )
    await LocalBackend(events).start(spec)
    return terminal, events


async def collect(terminal: Terminal) -> dict[int, bytes]:
    out: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
    async for channel, data in terminal.output():
        out[channel] += data
    return out


async def test_with_a_tty_the_process_has_a_controlling_terminal_of_the_clients_size(
    tmp_path: Path,
) -> None:
    terminal, events = await attached(
        tmp_path, "ps -o tty= -p $$; stty size; read line; echo got $line", tty=True
    )
    await terminal.write(b"hello\r")
    out = await collect(terminal)
    assert await terminal.exit_status() == 0
    text = out[STDOUT].decode()
    assert "pts/" in text  # a controlling tty, not "?"
    assert "30 100" in text
    assert "got hello" in text
    assert events.lines == []  # an attached dyno's output is its client's, not the logs'


async def test_with_a_tty_resize_reaches_the_process(tmp_path: Path) -> None:
    terminal, _ = await attached(tmp_path, "read a; stty size", tty=True)
    terminal.resize(120, 40)
    await terminal.write(b"\r")
    out = await collect(terminal)
    assert "40 120" in out[STDOUT].decode()


async def test_a_window_past_the_kernels_range_is_kept_within_9999(tmp_path: Path) -> None:
    """70000 columns raised struct.error out of resize (the winsize holds 16-bit numbers)."""
    terminal, _ = await attached(tmp_path, "read a; stty size; read b; stty size", tty=True)
    output = terminal.output()
    seen = ""
    terminal.resize(70000, 24)
    await terminal.write(b"\r")
    while "24 9999" not in seen:
        seen += (await anext(output))[1].decode()
    terminal.resize(-5, 0)
    await terminal.write(b"\r")
    async for _, data in output:
        seen += data.decode()
    assert "1 1" in seen


async def test_without_a_tty_stdout_and_stderr_stay_apart_and_stdin_ends(tmp_path: Path) -> None:
    terminal, _ = await attached(tmp_path, "cat; echo oops >&2; exit 3", tty=False)
    await terminal.write(b"line one\n")
    terminal.close_input()
    out = await collect(terminal)
    assert out == {STDOUT: b"line one\n", STDERR: b"oops\n"}
    assert await terminal.exit_status() == 3


async def test_hang_up_sends_sighup_to_the_dyno(tmp_path: Path) -> None:
    terminal, _ = await attached(tmp_path, "echo ready; sleep 30", tty=False)
    async for _ in terminal.output():
        terminal.hang_up()
    assert await terminal.exit_status() == 129
