"""The process registry (without cgroups): the next server on a home ends what a killed one
left running, known by pid and start time, and nothing else."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dynos.backends.orphans import ProcessRegistry, start_time

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:  # each leads a process group: all of it goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def session_of(command: str, processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["sh", "-c", command], start_new_session=True)
    processes.append(process)
    return process


def children(pid: int, count: int) -> list[psutil.Process]:
    """The ``count`` children of ``pid``, once it has started them."""
    found: list[psutil.Process] = []
    while len(found) < count:
        found = psutil.Process(pid).children()
    return found


def test_recorded_processes_still_running_are_killed_with_their_descendants(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    leader = session_of("setsid sleep 1000 & sleep 1000; true", spawned)
    below = children(leader.pid, 2)
    ProcessRegistry(tmp_path / "processes.json").record("dyno", leader.pid)
    killed = ProcessRegistry(tmp_path / "processes.json").reap()  # the next server's
    assert killed == 3
    _, alive = psutil.wait_procs(below, timeout=5)
    assert alive == []
    assert not psutil.pid_exists(leader.pid)  # killed, and reaped already (this test's child)
    assert not (tmp_path / "processes.json").exists()


def test_what_stays_in_a_dead_leaders_session_is_killed(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    leader = session_of("sleep 1000 & sleep 1000 & wait", spawned)
    below = children(leader.pid, 2)
    ProcessRegistry(tmp_path / "processes.json").record("dyno", leader.pid)
    os.kill(leader.pid, signal.SIGKILL)  # the reaper killed along with the server
    leader.wait()
    assert ProcessRegistry(tmp_path / "processes.json").reap() >= 1
    _, alive = psutil.wait_procs(below, timeout=5)
    assert alive == []


def test_a_pid_now_used_by_another_process_is_left_alone(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    other = session_of("sleep 1000", spawned)
    started = start_time(other.pid)
    assert started is not None
    entry = {"leader": [[other.pid, started - 1]], "members": [[other.pid, started - 1]]}
    (tmp_path / "processes.json").write_text(json.dumps({"dyno": entry}))
    assert ProcessRegistry(tmp_path / "processes.json").reap() == 0
    assert other.poll() is None


def test_a_damaged_registry_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "processes.json").write_text("{not json")
    assert ProcessRegistry(tmp_path / "processes.json").reap() == 0
