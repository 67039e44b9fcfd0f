"""Each dyno's private scratch space (root): its own /tmp, /dev/shm, /run/lock and every other
directory open to all users, on one capped tmpfs charged to its cgroup and gone with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.backends.base import DynoSpec
from dynos.backends.cgroups import Cgroups
from dynos.backends.local import LocalBackend
from dynos.backends.mounts import shared_directories
from dynos.backends.sandbox import Sandboxes, SharedDirectories
from dynos.core.sizes import DEFAULT_SIZE
from dynos.errors import PlatformError
from tests.backends.test_containment import OPENED, Events, dynos_cleaned_up  # noqa: F401

CGROUPS = Cgroups.detect()
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(CGROUPS is None, reason="mount namespaces and cgroups need root"),
    pytest.mark.anyio,
    pytest.mark.usefixtures("dynos_cleaned_up"),  # imported above: test_containment.py's
]
MB = 1024 * 1024
UVLOOP = ("asyncio", {"use_uvloop": True})
BOTH_LOOPS = ["asyncio", pytest.param(UVLOOP, id="uvloop")]


@pytest.fixture
def anyio_backend() -> object:
    """uvloop, the server's event loop; a test parametrized with BOTH_LOOPS runs on both."""
    return UVLOOP


@pytest.fixture(scope="module", autouse=True)
def parent_cgroups() -> Iterator[None]:
    yield
    if CGROUPS is not None:
        CGROUPS.close()  # this test process's parent groups, empty once its dynos stopped


@pytest.fixture(scope="module")
def shared() -> SharedDirectories:
    return SharedDirectories(shared_directories())


def backend(events: Events, shared: SharedDirectories, scratch_mb: int = 64) -> LocalBackend:
    sandboxes = Sandboxes(cgroups=CGROUPS, shared=shared, scratch_mb=scratch_mb)
    local = LocalBackend(events, sandboxes=sandboxes)
    OPENED.append(local)
    return local


def spec(cwd: Path, command: str, key: str = "k") -> DynoSpec:
    env = {"PATH": "/usr/bin:/bin"}
    return DynoSpec(key, "app", "run.1", command, cwd, env, None, DEFAULT_SIZE)


@pytest.fixture
def marker() -> Iterator[str]:
    name = f"dynos-test-{uuid.uuid4().hex}"
    yield name
    for directory in ("/tmp", "/var/tmp", "/run/lock", "/dev/shm"):  # what main would leave
        Path(directory, name).unlink(missing_ok=True)


@pytest.mark.parametrize("anyio_backend", BOTH_LOOPS)
async def test_what_a_dyno_writes_to_shared_directories_is_its_own_and_goes_with_it(
    tmp_path: Path, shared: SharedDirectories, marker: str
) -> None:
    places = [Path(d) / marker for d in ("/tmp", "/var/tmp", "/run/lock", "/dev/shm")]
    (tmp_path / "code.txt").write_text("the release\n")
    writes = "; ".join(f"echo secret > {p}; chmod 600 {p}" for p in places)

    events = Events()
    local = backend(events, shared)
    # Its release stays reachable although it lies under /tmp, which is covered.
    await local.start(spec(tmp_path, f"{writes}; cat {tmp_path}/code.txt; exec sleep 1000"))
    await events.until(lambda: "the release" in events.lines)
    assert [p for p in places if p.exists()] == []  # the machine never sees them
    await local.stop("k", grace=5)

    assert [p for p in places if p.exists()] == []


async def test_shared_memory_a_dyno_writes_is_charged_to_it_and_freed_when_it_stops(
    tmp_path: Path, shared: SharedDirectories, marker: str
) -> None:
    events = Events()
    local = backend(events, shared)
    fill = f"dd if=/dev/zero of=/dev/shm/{marker} bs=1M count=40 2>/dev/null"
    await local.start(spec(tmp_path, f"{fill}; echo written; exec sleep 1000"))
    await events.until(lambda: "written" in events.lines)
    used = local.memory_used("k")
    assert used is not None and used >= 40 * MB  # it counts against its memory limit
    scratch = local.scratch_usage("k")
    assert scratch is not None and scratch[0] >= 40 * MB and scratch[1] == 64 * MB
    assert not Path("/dev/shm", marker).exists()
    await local.stop("k", grace=5)
    assert local.memory_used("k") is None and local.scratch_usage("k") is None

    assert not Path("/dev/shm", marker).exists()


async def test_past_its_cap_a_write_fails_with_enospc_in_that_dyno_only(
    tmp_path: Path, shared: SharedDirectories, marker: str
) -> None:
    events = Events()
    local = backend(events, shared, scratch_mb=16)
    # /tmp and /dev/shm share one cap: 12 MB in one leaves 4 MB for the other.
    fill = (
        f"dd if=/dev/zero of=/dev/shm/{marker} bs=1M count=12 2>/dev/null; "
        f"dd if=/dev/zero of=/tmp/{marker} bs=1M count=64 2>&1 | head -1; "
        f"echo full; exec sleep 1000"
    )
    await local.start(spec(tmp_path, fill, key="full"))
    await local.start(spec(tmp_path, "echo begun; exec sleep 1000", key="other"))
    await events.until(lambda: "full" in events.lines)
    assert any("No space left on device" in line for line in events.lines)
    used, cap = local.scratch_usage("full") or (0, 0)
    assert cap == 16 * MB and used > cap - MB
    other = local.scratch_usage("other")
    assert other is not None and other[0] < MB  # another dyno's scratch is untouched
    await asyncio.gather(local.stop("full", 5), local.stop("other", 5))


async def test_a_shared_directory_anywhere_is_found_and_covered(
    tmp_path: Path, marker: str
) -> None:
    """Not a fixed list: a directory any user may write in, wherever it is, gets covered."""
    unusual = Path("/var/lib") / marker
    unusual.mkdir()
    try:
        unusual.chmod(0o1777)
        found = shared_directories()
        assert unusual in found
        assert Path("/tmp") in found and Path("/dev/shm") in found

        events = Events()
        local = backend(events, SharedDirectories(found))
        await local.start(spec(tmp_path, f"echo left > {unusual}/file; echo ok; sleep 1000"))
        await events.until(lambda: "ok" in events.lines)
        assert not (unusual / "file").exists()
        await local.stop("k", grace=5)
    finally:
        shutil.rmtree(unusual)


async def test_a_shared_directory_removed_since_the_walk_stops_no_dyno(
    tmp_path: Path, marker: str
) -> None:
    """The walk is made once, at the server's start; a directory it found and that is gone
    since (here, a test's; in CI, another test's on the same machine) is skipped, and one
    replaced by a link is not followed. Before, every later dyno failed with ENOENT."""
    gone, linked = Path("/var/lib") / marker, Path("/var/lib") / f"{marker}-link"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for directory in (gone, linked):
        directory.mkdir()
        directory.chmod(0o1777)
    try:
        found = shared_directories()
        assert gone in found and linked in found
        gone.rmdir()
        linked.rmdir()
        linked.symlink_to(elsewhere)

        events = Events()
        local = backend(events, SharedDirectories(found))
        command = f"echo private > /tmp/{marker}; echo ok; sleep 1000"
        await local.start(spec(tmp_path, command))
        await events.until(lambda: "ok" in events.lines)
        assert not Path("/tmp", marker).exists()  # the scratch still covers the others
        assert list(elsewhere.iterdir()) == []
        assert os.path.ismount(elsewhere) is False
        await local.stop("k", grace=5)
    finally:
        linked.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            gone.rmdir()


async def test_a_child_that_cannot_be_set_up_says_which_step_failed(tmp_path: Path) -> None:
    """The event loop passes on only an OSError's first argument (its errno): the setup
    names the step and the path instead of a bare "(2)"."""
    local = backend(Events(), SharedDirectories((Path("/tmp"),)))
    with pytest.raises(PlatformError) as failed:
        await local.start(spec(tmp_path / "no-such-release", "true"))
    message = str(failed.value)
    assert "entering its private scratch" in message, message
    assert "No such file or directory" in message and "no-such-release" in message


def test_the_scratch_cap_scales_with_the_size() -> None:
    from dynos.backends.scratch import scratch_bytes
    from dynos.core.sizes import find_size

    assert scratch_bytes(find_size("1X")) == 512 * MB
    assert scratch_bytes(find_size("2X")) == 1024 * MB
    assert scratch_bytes(find_size("performance-m"), scratch_mb=100) == 500 * MB
    assert os.path.isdir("/proc")  # the module is importable without root too


def test_targets_are_walked_following_no_link_the_one_only_root_can_rename_first(
    tmp_path: Path,
) -> None:
    """The stage (the tmpfs's mount point, reached by its path) is a directory whose parents
    only root may change; every other target is mounted on by the descriptor its walk
    opened, so that a link swapped in afterwards is not followed."""
    from dynos.backends.scratch import _open_targets

    anyones = tmp_path / "anyones"  # a parent anyone may write in: its child is no stage
    anyones.mkdir()
    anyones.chmod(0o1777)
    shared = anyones / "shared"
    shared.mkdir()
    (tmp_path / "elsewhere" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    links = (tmp_path / "link", tmp_path / "link" / "sub")  # a link last, or on the way
    opened = _open_targets((shared, Path("/tmp"), *links, tmp_path / "gone"))
    try:
        assert [path for path, _ in opened] == [Path("/tmp"), shared]
        assert [os.stat(fd).st_ino for _, fd in opened] == [
            os.stat("/tmp").st_ino,
            shared.stat().st_ino,
        ]
    finally:
        for _, fd in opened:
            os.close(fd)
