"""Each dyno's private scratch space (root only): its own ``/tmp``, ``/dev/shm`` and every other
directory open to all users, on one size-capped tmpfs that exists only while the dyno runs.

The child, between fork and exec, enters a mount namespace of its own (and an IPC namespace,
so System V shared memory and POSIX message queues are private too), makes every mount in it
private (nothing it mounts reaches the machine), mounts one tmpfs of the dyno's scratch size
and binds a fresh directory of it over each shared directory. A path the child must still
reach under one of them (its release, when the server's home is under /tmp) is bound back
in. When the dyno's last process exits the namespace goes, and with it the tmpfs and all it
held: nothing is left for the next user of the uid to find. Its pages are charged to the
memory cgroup of the process that wrote them, so scratch counts against the dyno's memory
limit; past the size a write fails with ENOSPC in that dyno alone. A dyno's app directory
(appdir.py) keeps its writes on the same tmpfs, under the same cap.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dynos.backends import linux
from dynos.backends.appdir import AppOverlay
from dynos.core.sizes import DEFAULT_SIZE, DynoSize

DEFAULT_SCRATCH_MB = 512  # a Standard-1X dyno's: its memory quota; other sizes scale with theirs
BYTES_PER_INODE = 8192  # files a scratch may hold: one per 8 KiB of its size
MIB = 1024 * 1024


def scratch_bytes(size: DynoSize, scratch_mb: int = DEFAULT_SCRATCH_MB) -> int:
    """The scratch cap of a dyno of ``size``, when a Standard-1X gets ``scratch_mb``."""
    return scratch_mb * MIB * size.memory_mb // DEFAULT_SIZE.memory_mb


@dataclass(frozen=True)
class Scratch:
    """One child's private scratch: ``targets`` (the shared directories, outermost only)
    covered by a tmpfs of ``size_bytes``; ``visible`` paths bound back in where a target
    would hide them."""

    targets: tuple[Path, ...]
    size_bytes: int
    visible: tuple[Path, ...] = ()
    app: AppOverlay | None = None  # a dyno's writable view of its release (appdir.py)

    def enter(self) -> None:
        """Run in the child, as root, between fork and exec. Raises OSError."""
        linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWIPC)
        # First: a mount made below would otherwise propagate to the machine's namespace.
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        targets = _open_targets(self.targets)
        if not targets and self.app is None:
            return
        release_fd = self.app.open_release() if self.app is not None else -1
        # Opened in the new namespace (a bind must come from a mount of the caller's own),
        # before the tmpfs hides them.
        kept = [
            (path, os.open(path, os.O_PATH | os.O_DIRECTORY))
            for path in self.visible
            if any(t in path.parents for t, _ in targets)
        ]
        # One tmpfs for all targets, so that they share the cap. It is mounted on the first
        # target, each target gets a directory of it, and the first target's own directory
        # is bound last, over the tmpfs's root: no staging directory is needed. The first is
        # one whose path only root can change (targets are sorted so), as the stage is
        # reached by its path; the others are bound on by their descriptors.
        # Without a shared directory to cover (unlikely), the tmpfs goes over the release,
        # which the app's overlay covers in turn.
        if targets:
            stage = str(targets[0][0])
        else:
            assert self.app is not None
            stage = str(self.app.release)
        options = f"size={self.size_bytes},nr_inodes={self._inodes},mode=0700"
        linux.mount("dynos-scratch", stage, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, options)
        for index in range(len(targets)):
            directory = f"{stage}/{index}"
            os.mkdir(directory)
            os.chmod(directory, 0o1777)  # as the machine's own: sticky, open to all
        # The app's layers share the scratch and its cap; made before a bind hides the stage.
        layers_fd = self.app.make_layers(stage) if self.app is not None else -1
        for index, (_, fd) in reversed(list(enumerate(targets))):
            # On the descriptor: the mount lands on the directory walked to, whatever its
            # path names now (the kernel mounts over the topmost mount there, the stage's).
            linux.mount(f"{stage}/{index}", f"/proc/self/fd/{fd}", None, linux.MS_BIND)
            os.close(fd)
        for path, fd in kept:
            _make_mount_point(path)
            linux.mount(f"/proc/self/fd/{fd}", str(path), None, linux.MS_BIND | linux.MS_REC)
            os.close(fd)
        if self.app is not None:  # last: over the release bound back in above
            self.app.mount(release_fd, layers_fd)

    @property
    def _inodes(self) -> int:
        return max(1024, self.size_bytes // BYTES_PER_INODE)


def _open_targets(targets: tuple[Path, ...]) -> list[tuple[Path, int]]:
    """Each shared directory that is still one, with an O_PATH descriptor of it, walked from
    ``/`` one name at a time following no link: a mount on the descriptor lands there, not
    where a link swapped in since points. They were found once, at the server's start; one
    removed since (another program's, a test's) or turned into a link is skipped: binding
    over a missing one would fail every later dyno's start with ENOENT. Those whose path
    only root can change come first (the stage, reached by its path)."""
    opened = []
    for target in targets:
        # Gone, or a link or a file in its place (O_DIRECTORY refuses a link): skipped.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            opened.append((target, _walk(target)))
    return sorted(opened, key=lambda pair: not _root_only(pair[0].parents))


def _walk(path: Path) -> int:
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
    fd = os.open("/", flags)
    try:
        for name in path.parts[1:]:
            parent, fd = fd, os.open(name, flags, dir_fd=fd)
            os.close(parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _root_only(directories: Sequence[Path]) -> bool:
    """Whether only root may rename or replace what these directories hold."""
    try:
        modes = [os.lstat(directory) for directory in directories]
    except OSError:
        return False
    return all(m.st_uid == 0 and not m.st_mode & 0o022 and stat.S_ISDIR(m.st_mode) for m in modes)


def _make_mount_point(path: Path) -> None:
    """Make ``path`` and its missing parents, root's, passable but not listable by others
    (the server's umask would make them closed; the dyno must get through them)."""
    for directory in [*reversed(path.parents), path]:
        if not directory.exists():
            os.mkdir(directory)
            os.chmod(directory, 0o711)


def scratch_usage(pid: int, target: Path) -> tuple[int, int] | None:
    """(used, size) in bytes of the scratch that process ``pid`` sees at ``target``, read
    through its own mount namespace; None once it is gone."""
    try:
        stat = os.statvfs(f"/proc/{pid}/root{target}")
    except OSError:
        return None
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize, stat.f_blocks * stat.f_frsize
