"""A dyno is every process it starts, however detached (``setsid``): the local backend stops
them all, and ends them all when its main process exits. As root a cgroup holds them;
without root (or without cgroups) a reaper does: both are run here, on both event loops."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psutil
import pytest

from dynos.backends.base import DynoSpec
from dynos.backends.cgroups import Cgroups
from dynos.backends.local import LocalBackend
from dynos.core.sizes import DEFAULT_SIZE

CGROUPS = Cgroups.detect()
HOLDERS = [
    "reaper",
    pytest.param("cgroup", marks=pytest.mark.skipif(CGROUPS is None, reason="cgroups need root")),
]
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.anyio,
    pytest.mark.usefixtures("dynos_cleaned_up"),
    pytest.mark.parametrize("holder", HOLDERS),
]

# A child in a session of its own that says its pid, then the dyno's main process.
DETACHED = "setsid sh -c 'echo detached $$; exec sleep 1000' & "


@pytest.fixture(scope="module", autouse=True)
def parent_cgroups() -> Iterator[None]:
    yield
    if CGROUPS is not None:
        CGROUPS.close()  # this test process's parent groups, empty once its dynos stopped


OPENED: list[LocalBackend] = []  # the scenario's backends, closed even when it fails
ESCAPED: list[int] = []  # detached processes, killed at the end whatever happened


@pytest.fixture
async def dynos_cleaned_up(anyio_backend: object) -> AsyncIterator[None]:
    """After the test, on its event loop, whether it passed or not: what escaped is killed
    and every backend it opened is closed (test_scratch.py's tests too)."""
    try:
        yield
    finally:
        # One that escaped its dyno would hold its output pipes open, and the stop below
        # would wait for them: it goes first.
        for pid in ESCAPED:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        ESCAPED.clear()
        await asyncio.gather(*(local.close(1) for local in OPENED))
        OPENED.clear()


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both event loops: the server runs uvloop, whose fork hooks run in another order."""
    return request.param


class Events:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.exits: dict[str, int] = {}
        self.changed = asyncio.Event()

    def dyno_output(self, key: str, line: str) -> None:
        self.lines.append(line)
        self.changed.set()

    def dyno_up(self, key: str) -> None:
        pass

    def dyno_exited(self, key: str, status: int) -> None:
        self.exits[key] = status
        self.changed.set()

    def dyno_boot_timeout(self, key: str) -> None:
        pass

    def dyno_oom_killed(self, key: str) -> None:
        pass

    async def until(self, predicate: Callable[[], object], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def detached_pid(self) -> int:
        await self.until(lambda: any(line.startswith("detached ") for line in self.lines))
        pid = int(next(line for line in self.lines if line.startswith("detached ")).split()[1])
        ESCAPED.append(pid)
        return pid


def backend(holder: str, events: Events) -> LocalBackend:
    local = LocalBackend(events, cgroups=CGROUPS if holder == "cgroup" else None)
    OPENED.append(local)
    return local


def spec(tmp_path: Path, command: str, key: str = "k") -> DynoSpec:
    env = {"PATH": "/usr/bin:/bin"}
    return DynoSpec(key, "app", "run.1", command, tmp_path, env, None, DEFAULT_SIZE)


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie awaiting its new parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until_gone(pid: int, timeout: float = 10) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not gone(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_stop_ends_the_processes_that_left_the_dyno_session(
    tmp_path: Path, holder: str
) -> None:
    events = Events()
    local = backend(holder, events)
    await local.start(spec(tmp_path, DETACHED + "exec sleep 1000"))
    detached = await events.detached_pid()
    assert os.getsid(detached) == detached  # its own session: no group signal reaches it
    async with asyncio.timeout(10):
        killed = await local.stop("k", grace=5)
    assert not killed  # SIGTERM was enough, for both processes
    assert await until_gone(detached, timeout=2)
    assert events.exits == {"k": 143}


async def test_when_the_main_process_exits_what_it_left_running_goes_too(
    tmp_path: Path, holder: str
) -> None:
    events = Events()
    local = backend(holder, events)
    await local.start(spec(tmp_path, DETACHED + "sleep 0.5; exit 3"))
    detached = await events.detached_pid()
    await events.until(lambda: "k" in events.exits)
    assert events.exits == {"k": 3}
    assert await until_gone(detached, timeout=2)


async def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, holder: str
) -> None:
    events = Events()
    local = backend(holder, events)
    stubborn = "setsid sh -c 'trap \"\" TERM; echo detached $$; while :; do sleep 1; done' & "
    await local.start(spec(tmp_path, stubborn + "exec sleep 1000"))
    detached = await events.detached_pid()
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(10):
        assert await local.stop("k", grace=1)  # it had to be killed
    assert asyncio.get_running_loop().time() - started >= 1
    assert await until_gone(detached, timeout=2)


async def test_an_r15_kill_ends_every_process_at_once(tmp_path: Path, holder: str) -> None:
    events = Events()
    local = backend(holder, events)
    await local.start(spec(tmp_path, DETACHED + "exec sleep 1000"))
    detached = await events.detached_pid()
    local.kill("k")
    await events.until(lambda: "k" in events.exits)
    assert events.exits == {"k": 137}
    assert await until_gone(detached, timeout=2)
