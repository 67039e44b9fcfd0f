"""Nothing escapes a dyno (issue 11, items 3, 4 and 5-6 of the scratch space): processes that
left its session end with it, what it writes to /tmp, /dev/shm, /run/lock ... is its own and
goes with it, and what a killed server left running is reaped by the next one. As root, and
without root: those tests run the server as an unprivileged user."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dynos.testing.harness import RunningServer, start_server, wait_for

ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not ROOT, reason="cgroups, users and mount namespaces need root")
NOBODY = 65534
SHARED = ("/tmp", "/var/tmp", "/run/lock", "/dev/shm")
SCRATCH_MB = 32  # the servers' Standard-1X scratch here
# A process in a session of its own (no group signal reaches it) that says its pid.
DETACH = "setsid sh -c 'echo detached $$; exec sleep 1000' &"


def app_dir(tmp_path: Path, procfile: str) -> Path:
    directory = tmp_path / f"app-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    (directory / "Procfile").write_text(procfile)
    (directory / "detach.sh").write_text(f"{DETACH}\nexec sleep 1000\n")
    return directory


def deploy(server: RunningServer, tmp_path: Path, procfile: str = "worker: sh detach.sh\n") -> str:
    app = f"app-{uuid.uuid4().hex[:8]}"
    server.create_app(app)
    server.deploy(app, app_dir(tmp_path, procfile))
    return app


def detached(server: RunningServer, app: str, count: int = 1) -> list[int]:
    """The pids the app's detached processes said, once ``count`` of them have."""
    found: list[int] = []

    def said() -> bool:
        found[:] = [int(p) for p in re.findall(r"\]: detached (\d+)$", server.logs(app), re.M)]
        return len(found) >= count

    wait_for(said, what=f"{count} detached process(es) in the logs of {app}")
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_gone(*pids: int, timeout: float = 10) -> None:
    try:
        wait_for(lambda: all(gone(p) for p in pids), timeout, what=f"{pids} gone")
    finally:
        for pid in pids:  # whatever the outcome, leave nothing running
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def run_detached(server: RunningServer, app: str, command: str) -> str:
    said = server.cli("run:detached", "-a", app, command).stdout
    return said.split("done, ")[1].split()[0]


def exited(server: RunningServer, app: str, dyno: str) -> bool:
    return f"dynos[{dyno}]: Process exited" in server.logs(app)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the scenarios that leave it running (as root when the tests are)."""
    home = tmp_path_factory.mktemp("containment") / "home"
    running = start_server(home, "--stop-grace", "2", env={"DYNOS_SCRATCH_MB": str(SCRATCH_MB)})
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[list[RunningServer]]:
    """Servers started with ``start_unprivileged``, stopped at the end."""
    servers: list[RunningServer] = []
    yield servers
    for each in servers:
        if each.process.poll() is None:
            each.stop()


def start_unprivileged(home: Path, servers: list[RunningServer]) -> RunningServer:
    """A server without root: as nobody when the tests run as root."""
    running = start_server(home, "--stop-grace", "2", user=NOBODY if ROOT else None)
    servers.append(running)
    return running


# -- processes ---------------------------------------------------------------------------------


def test_detached_children_of_a_one_off_end_when_it_exits(
    server: RunningServer, tmp_path: Path
) -> None:
    app = deploy(server, tmp_path, "web: sleep 1000\n")
    dyno = run_detached(server, app, f"{DETACH} sleep 1")
    [pid] = detached(server, app)
    wait_for(lambda: exited(server, app, dyno), what="the one-off's exit")
    assert_gone(pid)


@root_only
def test_ps_restart_ends_detached_children(server: RunningServer, tmp_path: Path) -> None:
    app = deploy(server, tmp_path)
    server.scale(app, worker=1)
    [first] = detached(server, app)
    server.cli("ps:restart", "-a", app)
    detached(server, app, count=2)  # the new one started
    assert_gone(first)


@root_only
def test_scaling_to_zero_ends_detached_children(server: RunningServer, tmp_path: Path) -> None:
    app = deploy(server, tmp_path)
    server.scale(app, worker=1)
    [pid] = detached(server, app)
    server.scale(app, worker=0)
    assert_gone(pid)


@root_only
def test_destroying_an_app_ends_its_processes_and_removes_its_user(
    server: RunningServer, tmp_path: Path
) -> None:
    app = deploy(server, tmp_path)
    server.scale(app, worker=1)
    [pid] = detached(server, app)
    user = psutil.Process(pid).username()
    assert user.startswith("dyno-")
    server.cli("apps:destroy", app, "--confirm", app)
    assert_gone(pid)
    with pytest.raises(KeyError):
        pwd.getpwnam(user)


# -- files and memory --------------------------------------------------------------------------


@root_only
def test_files_a_dyno_leaves_in_shared_directories_never_reach_the_next_user_of_its_uid(
    server: RunningServer, tmp_path: Path
) -> None:
    marker = f"dynos-test-{uuid.uuid4().hex}"
    places = [Path(d) / marker for d in SHARED]
    try:
        writes = "; ".join(f"echo secret > {p}; chmod 600 {p}" for p in places)
        first = deploy(server, tmp_path, f"worker: {writes}; echo written; exec sleep 1000\n")
        server.scale(first, worker=1)
        wait_for(lambda: "app[worker.1]: written" in server.logs(first), what="written")
        assert [p for p in places if p.exists()] == []  # the machine never sees them
        server.cli("apps:destroy", first, "--confirm", first)
        # The next app (whichever uid it gets, maybe that one) finds none of them.
        look = "; ".join(f"cat {p} 2>&1" for p in places)
        second = deploy(server, tmp_path, f"worker: {look}; echo looked; exec sleep 1000\n")
        server.scale(second, worker=1)
        wait_for(lambda: "app[worker.1]: looked" in server.logs(second), what="looked")
        assert "secret" not in server.logs(second)
        assert [p for p in places if p.exists()] == []
    finally:
        for place in places:
            place.unlink(missing_ok=True)


def _shmem_charged(pid: int) -> int:
    """Bytes of tmpfs pages charged to the memory cgroup of ``pid`` (v1 or v2)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            stat = Path(f"/sys/fs/cgroup/memory{path}/memory.stat")
            key = "total_shmem"
            break
    else:
        path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        stat, key = Path(f"/sys/fs/cgroup{path}/memory.stat"), "shmem"
    values = dict(line.split() for line in stat.read_text().splitlines())
    return int(values[key])


@root_only
def test_shared_memory_a_one_off_wrote_is_charged_to_it_and_freed_when_it_exits(
    server: RunningServer, tmp_path: Path
) -> None:
    """Three one-offs once left 2.1 GB in /dev/shm, charged to no dyno."""
    marker = f"dynos-test-{uuid.uuid4().hex}"
    try:
        app = deploy(server, tmp_path, "web: sleep 1000\n")
        fill = f"dd if=/dev/zero of=/dev/shm/{marker} bs=1M count=20 2>/dev/null"
        # Alive long enough to be looked at on a loaded machine (3 s was not, once).
        dyno = run_detached(server, app, f"{fill}; echo pid $$; exec sleep 15")
        wait_for(lambda: f"app[{dyno}]: pid " in server.logs(app), what="the shm written")
        pid = int(re.findall(rf"app\[{dyno}\]: pid (\d+)", server.logs(app))[0])
        assert _shmem_charged(pid) >= 20 * 1024 * 1024
        assert not Path("/dev/shm", marker).exists()
        wait_for(lambda: exited(server, app, dyno), timeout=60, what="the one-off's exit")
        assert not Path("/dev/shm", marker).exists()
    finally:
        Path("/dev/shm", marker).unlink(missing_ok=True)


@root_only
def test_a_full_scratch_fails_writes_with_enospc_in_that_dyno_only_and_says_why(
    server: RunningServer, tmp_path: Path
) -> None:
    marker = f"dynos-test-{uuid.uuid4().hex}"
    try:
        app = deploy(server, tmp_path, "web: sleep 1000\n")
        fill = f"dd if=/dev/zero of=/tmp/{marker} bs=1M count={2 * SCRATCH_MB}"
        dyno = run_detached(server, app, f"{fill}; echo filled; exec sleep 5")
        wait_for(lambda: f"app[{dyno}]: filled" in server.logs(app), what="the write")
        wait_for(
            lambda: f"dynos[{dyno}]: Error: scratch space full" in server.logs(app),
            what="the platform's line",
        )
        assert "No space left on device" in server.logs(app)
        assert not Path("/tmp", marker).exists()
        other = deploy(server, tmp_path, "web: sleep 1000\n")
        small = f"dd if=/dev/zero of=/tmp/{marker} bs=1M count=4 2>/dev/null && echo wrote"
        dyno = run_detached(server, other, small)
        wait_for(lambda: f"app[{dyno}]: wrote" in server.logs(other), what="another app's write")
    finally:
        Path("/tmp", marker).unlink(missing_ok=True)


# -- servers -----------------------------------------------------------------------------------


@root_only
def test_the_dynos_of_a_killed_server_end_with_it(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home")
    try:
        app = deploy(server, tmp_path)
        server.scale(app, worker=1)
        [pid] = detached(server, app)
    finally:
        server.process.kill()  # no chance to stop its dynos: its watchdog does
        server.process.wait()
    assert_gone(pid)


@root_only
def test_the_next_server_reaps_what_a_killed_one_left(tmp_path: Path) -> None:
    """The server and its watchdog killed at once: the next server on the home reaps."""
    first = start_server(tmp_path / "home")
    try:
        app = deploy(first, tmp_path)
        first.scale(app, worker=1)
        [pid] = detached(first, app)
    finally:
        children = psutil.Process(first.process.pid).children()
        watchdog = [c for c in children if "watchdog.py" in " ".join(c.cmdline())]
        # The watchdog first: killed after the server, it can see the server die (its
        # parent-death signal) and reap before its own kill lands (a CI run saw that).
        for process in [*watchdog, first.process]:
            process.kill()
        first.process.wait()
    time.sleep(0.5)
    assert not gone(pid)
    second = start_server(tmp_path / "home")
    try:
        assert_gone(pid)
    finally:
        second.stop()


@root_only
def test_a_starting_server_leaves_other_servers_cgroups_alone(tmp_path: Path) -> None:
    """Another server's pid may be unknown here (a pid namespace) or reused: its groups are
    not this server's to reap, whatever their name says."""
    dead = 1
    while psutil.pid_exists(dead) or dead < 400000:  # a pid no process here has
        dead = int.from_bytes(os.urandom(3), "big") + 400000
    hierarchy = Path("/sys/fs/cgroup/pids")
    group = (hierarchy if hierarchy.is_dir() else Path("/sys/fs/cgroup")) / f"dynos-{dead}" / "x"
    group.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "1000"])
    try:
        (group / "cgroup.procs").write_text(str(other.pid))
        running = start_server(tmp_path / "home")
        running.stop()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        for directory in (group, group.parent):
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


def test_a_second_server_on_the_same_home_refuses_to_start(tmp_path: Path) -> None:
    """What a server finds of its home's at start (cgroups, processes, users) must be a dead
    server's: only one server may hold a home."""
    home = tmp_path / "home"
    first = start_server(home)
    try:
        second = subprocess.Popen(
            [
                *(sys.executable, "-m", "dynos", "server", "--home", str(home)),
                *("--api-port", "0", "--router-port", "0", "--router-host", "127.0.0.1"),
                *("--rendezvous-port", "0"),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("DYNOS_")},
        )
        try:
            _, said = second.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # it runs beside the first one
            second.terminate()
            _, said = second.communicate(timeout=60)
            said = f"it kept running: {said}"
    finally:
        first.stop()
    assert "Another dynos process" in said and f"is using {home}" in said
    assert second.returncode == 1


# -- without root ------------------------------------------------------------------------------


def test_without_root_detached_children_of_a_one_off_end_when_it_exits(
    tmp_path: Path, unprivileged: list[RunningServer]
) -> None:
    server = start_unprivileged(tmp_path / "home", unprivileged)
    app = deploy(server, tmp_path, "web: sleep 1000\n")
    dyno = run_detached(server, app, f"{DETACH} sleep 1")
    [pid] = detached(server, app)
    wait_for(lambda: exited(server, app, dyno), what="the one-off's exit")
    assert_gone(pid)


def test_without_root_a_restart_ends_detached_children(
    tmp_path: Path, unprivileged: list[RunningServer]
) -> None:
    server = start_unprivileged(tmp_path / "home", unprivileged)
    app = deploy(server, tmp_path)
    server.scale(app, worker=1)
    [first] = detached(server, app)
    server.cli("ps:restart", "-a", app)
    detached(server, app, count=2)
    assert_gone(first)


def test_without_root_the_dynos_of_a_killed_server_end_with_it(
    tmp_path: Path, unprivileged: list[RunningServer]
) -> None:
    server = start_unprivileged(tmp_path / "home", unprivileged)
    app = deploy(server, tmp_path)
    server.scale(app, worker=1)
    [pid] = detached(server, app)
    server.process.kill()
    server.process.wait()
    assert_gone(pid)


def test_without_root_the_next_server_reaps_what_a_killed_one_left(
    tmp_path: Path, unprivileged: list[RunningServer]
) -> None:
    """The server and the processes watching its dynos killed at once: only the next server,
    from what the killed one recorded in the home, can end the dyno's processes."""
    server = start_unprivileged(tmp_path / "home", unprivileged)
    app = deploy(server, tmp_path)
    server.scale(app, worker=1)
    [pid] = detached(server, app)
    time.sleep(1.5)  # the memory watch records each dyno's processes every half second
    # The reapers first: a server killed first would have its death signal reach them, and
    # they would end the dyno themselves (the case the test above covers).
    killed = [*(c.pid for c in psutil.Process(server.process.pid).children()), server.process.pid]
    for each in killed:
        os.kill(each, signal.SIGKILL)
    server.process.wait()
    time.sleep(0.5)
    assert not gone(pid)
    start_unprivileged(tmp_path / "home", unprivileged)
    assert_gone(pid)
