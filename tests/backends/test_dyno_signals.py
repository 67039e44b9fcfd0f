"""A dyno starts with every signal at its default action and none blocked, whatever the
server's own signal state: a server started under ``nohup`` ignores SIGHUP, one started as a
background job of a script ignores SIGINT and SIGQUIT, and ``exec`` keeps an ignored signal
ignored. Without the reset, a hung-up ``dynos run`` left its dyno running: the flaky
test_attach.py::test_hang_up_sends_sighup_to_the_dyno[asyncio] times out exactly so whenever
pytest runs with SIGHUP ignored (``nohup pytest``); uvloop's spawn resets signals itself,
CPython's does not. Real processes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dynos.backends.attach import Terminal
from dynos.backends.base import DynoSpec
from dynos.backends.local import LocalBackend
from dynos.core.sizes import DEFAULT_SIZE

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]
SERVER_IGNORES = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
SERVER_BLOCKS = {signal.SIGTERM, signal.SIGUSR1}


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both event loops: the server runs uvloop, whose spawn resets signals by itself."""
    return request.param


@contextmanager
def server_under_nohup() -> Iterator[None]:
    """This process (the server) ignores and blocks what a nohup'd job or a script's
    background job would, for the duration."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SERVER_IGNORES}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SERVER_BLOCKS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Events:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.terminal: Terminal | None = None

    def dyno_output(self, key: str, line: str) -> None:
        self.lines.append(line)

    def dyno_up(self, key: str) -> None:
        pass

    def dyno_exited(self, key: str, status: int) -> None:
        if self.terminal is not None:
            self.terminal.finish(status)
        self.exited.set_result(status)

    def dyno_boot_timeout(self, key: str) -> None:
        pass

    def dyno_oom_killed(self, key: str) -> None:
        pass


def spec(tmp_path: Path, command: str, terminal: Terminal | None = None) -> DynoSpec:
    env = {"PATH": "/usr/bin:/bin"}
    return DynoSpec(
        "k", "app", "run.1", command, tmp_path, env, None, DEFAULT_SIZE, terminal=terminal
    )


def mask(lines: list[str], field: str) -> set[int]:
    """The signal numbers set in ``field`` (SigIgn, SigBlk) of /proc/PID/status lines."""
    [value] = [line.split()[1] for line in lines if line.startswith(f"{field}:")]
    bits = int(value, 16)
    return {n + 1 for n in range(64) if bits >> n & 1}


async def test_a_dyno_ignores_and_blocks_nothing_the_server_did(tmp_path: Path) -> None:
    events = Events()
    with server_under_nohup():
        await LocalBackend(events).start(spec(tmp_path, "exec cat /proc/self/status"))
    assert await events.exited == 0
    assert mask(events.lines, "SigIgn") & {*SERVER_IGNORES, signal.SIGPIPE} == set()
    assert mask(events.lines, "SigBlk") == set()


async def test_hang_up_ends_an_attached_dyno_of_a_server_under_nohup(tmp_path: Path) -> None:
    events = Events()
    terminal = events.terminal = Terminal(tty=False)
    with server_under_nohup():
        await LocalBackend(events).start(spec(tmp_path, "echo ready; sleep 10", terminal))
    async for _ in terminal.output():
        terminal.hang_up()
    assert await terminal.exit_status() == 128 + signal.SIGHUP
