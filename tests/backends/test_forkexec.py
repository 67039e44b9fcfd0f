"""The window between fork and exec (dynos.backends.forkexec), on both event loops, with real
child processes: a child stuck in its setup is ended by its alarm (the server's loop waits
for the exec all that time), the alarm does not outlive a setup that ends, a child whose setup
failed is reaped (uvloop leaves it a zombie), and a slow start is logged."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dynos.backends.confined import Sandbox
from dynos.backends.forkexec import FailedChild, default_signals

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both event loops: the server runs uvloop, which neither waits for a child whose setup
    failed nor resets the signals' actions before the setup runs."""
    return request.param


def plain_sandbox(name: str) -> Sandbox:
    """A sandbox with nothing to join or enter: the setup is the signals, the priority and
    the alarm."""
    return Sandbox(
        name,
        cgroups=None,
        group=None,
        user=None,
        scratch=None,
        niceness=os.getpriority(os.PRIO_PROCESS, 0),
        registry=None,
        python=sys.executable,
    )


async def test_a_child_stuck_in_its_setup_is_ended_by_its_alarm() -> None:
    def stuck() -> None:
        default_signals(alarm=1)
        time.sleep(60)

    began = time.monotonic()
    process = await asyncio.create_subprocess_exec("true", preexec_fn=stuck)
    assert await process.wait() == -signal.SIGALRM
    assert time.monotonic() - began < 20


async def test_the_alarm_does_not_outlive_a_setup_that_ends() -> None:
    """A timer survives exec: the command would die of it ten seconds in."""
    setup = plain_sandbox("timer").child_setup()
    code = "import signal; print(signal.getitimer(signal.ITIMER_REAL)[0])"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, preexec_fn=setup, stdout=subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert float(out) == 0.0


async def test_a_child_whose_setup_failed_is_reaped(tmp_path: Path) -> None:
    told = tmp_path / "pid"

    def fails() -> None:
        told.write_text(str(os.getpid()))
        raise OSError("joining its cgroup: [Errno 16] Device or resource busy")

    child = FailedChild(fails)
    try:
        with pytest.raises(subprocess.SubprocessError):
            await asyncio.create_subprocess_exec("true", preexec_fn=child.setup)
        child.reap()
    finally:
        child.close()
    pid = int(told.read_text())
    with pytest.raises(ChildProcessError):  # reaped: no zombie of it is left
        os.waitpid(pid, os.WNOHANG)
    assert not psutil.pid_exists(pid)


async def test_reaping_without_a_failed_child_waits_for_nothing() -> None:
    child = FailedChild(lambda: None)
    try:
        process = await asyncio.create_subprocess_exec("sleep", "5", preexec_fn=child.setup)
        began = time.monotonic()
        child.reap()  # nothing told: the running child is not waited for
        assert time.monotonic() - began < 0.5
        assert process.returncode is None
        process.kill()
        await process.wait()
    finally:
        child.close()


async def test_a_slow_start_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def slow(setup):  # type: ignore[no-untyped-def]
        def run() -> None:
            setup()
            time.sleep(1.2)

        return run

    sandbox = plain_sandbox("web.1")
    with caplog.at_level(logging.WARNING, logger="dynos.backends.confined"):
        process = await sandbox.spawn(["true"], wrap_setup=slow)
        await process.wait()
    await sandbox.finish()
    [record] = [r for r in caplog.records if "from fork to exec" in r.getMessage()]
    assert record.getMessage().startswith("web.1 took 1.")


async def test_a_reapers_own_environment_is_empty_and_its_program_gets_the_dynos() -> None:
    """As root without cgroups the reaper is root until its child drops to the app's user:
    the dynamic loader must not read the dyno's config (LD_PRELOAD) in it."""
    sandbox = plain_sandbox("web.1")
    env = {"PATH": os.environ["PATH"], "LD_PRELOAD": "", "SECRET": "a b=c"}
    process = await sandbox.spawn(
        ["sh", "-c", 'echo "$SECRET"; echo "${LD_PRELOAD-unset}"; exec cat'],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    said = [await process.stdout.readline() for _ in range(2)]
    assert said == [b"a b=c\n", b"\n"]  # the program's: the dyno's, empty values included
    reapers = Path(f"/proc/{process.pid}/environ").read_bytes()
    assert reapers == b"", reapers
    process.stdin.close()
    assert await process.wait() == 0
    await sandbox.finish()


async def test_an_environment_exec_would_refuse_is_refused_before_the_reaper_starts() -> None:
    sandbox = plain_sandbox("web.1")
    with pytest.raises(ValueError):
        await sandbox.spawn(["true"], env={"A": "x\0LD_PRELOAD=./evil.so"})
