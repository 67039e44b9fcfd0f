"""Handing a tree of files to an unprivileged user and taking it back: a slug for its build,
an add-on's data for its server (both run in a sandbox, :mod:`dynos.backends.sandbox`).

The files such a process writes are handed to its user before it starts and taken back by
root once it has stopped. Both walk the tree by directory file descriptors and never follow a
link: a process of the same user (another dyno of the app) may have left links, or raced to
make them, to files it could not otherwise touch.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from dynos.backends.isolation import DynoUser


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
