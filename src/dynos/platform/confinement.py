"""Confining what the platform runs for an app besides its dynos: builds and add-on servers.

As root such a process runs as an unprivileged user (a build as its app's user, an add-on
server as a user of its own), in a cgroup of its own with the memory, CPU and pids limits it
was given, and at the workloads' priority, never the router's. It is stopped by killing every
process in its cgroup, so that nothing it started (``setsid``, a double fork) outlives it.
Without root only the priority applies, and a kill reaches the process group and whatever
still descends from the main process: a process that left both escapes.

The files such a process writes are handed to its user before it starts and taken back by
root once it has stopped. Both walk the tree by directory file descriptors and never follow a
link: a process of the same user (another dyno of the app) may have left links, or raced to
make them, to files it could not otherwise touch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from dynos.backends import cgroups as cg
from dynos.backends.isolation import DynoUser
from dynos.priority import as_workload

KILL_TIMEOUT = 5.0  # seconds to empty a cgroup (each round kills what was started meanwhile)
KILL_POLL = 0.01


@dataclass(frozen=True)
class Confinement:
    """Where one platform-started process runs: as ``user`` (None: the server's), in
    ``cgroup`` (None: no cgroups)."""

    user: DynoUser | None = None
    cgroup: cg.DynoCgroup | None = None

    def child_setup(self, workdir: Path | None = None) -> Callable[[], None]:
        """What the child does between fork and exec: join the cgroup, leave the router's
        priority, enter ``workdir``, drop to the user (in that order: joining needs root, and
        ``workdir`` may be below a directory only root may pass). uvloop runs this before it
        would change to a ``cwd`` given to the subprocess, hence ``workdir``."""
        procs = self.cgroup.procs if self.cgroup else ()
        user = self.user

        def setup() -> None:
            cg.join(procs)
            as_workload()
            if workdir is not None:
                os.chdir(workdir)
            if user is not None:
                os.setgroups([])
                os.setgid(user.gid)
                os.setuid(user.uid)

        return setup

    async def kill_all(self, pid: int) -> None:
        """SIGKILL every process of the confined process ``pid`` (started in a session of its
        own): its whole cgroup, else its process group and its descendants."""
        if self.cgroup is not None:
            await _empty_cgroup(self.cgroup)
            return
        try:
            victims = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            victims = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()

    def pids(self) -> set[int]:
        """The processes in the cgroup now (empty without one)."""
        return _cgroup_pids(self.cgroup) if self.cgroup else set()


async def _empty_cgroup(group: cg.DynoCgroup) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + KILL_TIMEOUT
    while pids := _cgroup_pids(group):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if loop.time() > deadline:
            return
        await asyncio.sleep(KILL_POLL)


def _cgroup_pids(group: cg.DynoCgroup) -> set[int]:
    pids: set[int] = set()
    for procs in group.procs:
        with contextlib.suppress(OSError):
            pids.update(int(line) for line in procs.read_text().split())
    return pids


def hand_over(root: Path, user: DynoUser) -> None:
    """Give the tree at ``root`` to ``user``. Deepest entries first and each directory after
    its entries: the user can add nothing to a directory before all of it is handed over."""
    walk = os.fwalk(root, topdown=False, follow_symlinks=False)
    for _, dirnames, filenames, dirfd in walk:
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, user.uid, user.gid, dir_fd=dirfd, follow_symlinks=False)
    os.chown(root, user.uid, user.gid, follow_symlinks=False)


def take_back(root: Path) -> None:
    """Make root the owner of the tree at ``root`` again, with no access for group or others
    and no setuid, setgid or sticky bit. Each directory is taken before its entries, so that
    once an entry's turn comes nobody else can replace it (by a link, say)."""
    _take(root, None)
    for _, dirnames, filenames, dirfd in os.fwalk(root, topdown=True, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                _take(name, dirfd)


def _take(path: Path | str, dirfd: int | None) -> None:
    info = os.stat(path, dir_fd=dirfd, follow_symlinks=False)
    os.chown(path, 0, 0, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):  # a link has no mode of its own
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700, dir_fd=dirfd)
