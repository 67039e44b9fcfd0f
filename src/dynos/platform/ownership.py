"""Handing a tree of files to an unprivileged user and taking it back: a slug for its build,
an add-on's data for its server (both run in a sandbox, :mod:`dynos.backends.sandbox`); and
sealing one, a build's environment that its user may read and run, never change.

The files such a process writes are handed to its user before it starts and taken back by
root once it has stopped. All of these walk the tree by directory file descriptors and never
follow a link: a process of the same user (another dyno of the app) may have left links, or
raced to make them, to files it could not otherwise touch.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from dynos.backends.isolation import DynoUser

DirId = tuple[int, int]  # a directory's (st_dev, st_ino): which one it is, whatever its name


@dataclass(frozen=True)
class Sealed:
    """A tree once sealed (:func:`seal`): which directory it is and its files' bytes."""

    dir: DirId
    bytes: int | None


def hand_over(root: Path, user: DynoUser, keep: Collection[str] = ()) -> None:
    """Give the tree at ``root`` to ``user``, but for the entries at its top named in
    ``keep`` (a sealed environment: root's, which the user reads and runs as it is).
    Deepest entries first and each directory after its entries: the user can add nothing to
    a directory before all of it is handed over."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(top):
            if name not in keep:
                _hand_over_entry(name, top, user)
        os.chown(top, user.uid, user.gid)
    finally:
        os.close(top)


def _hand_over_entry(name: str, top: int, user: DynoUser) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.stat(name, dir_fd=top, follow_symlinks=False).st_mode):
            walk = os.fwalk(name, topdown=False, follow_symlinks=False, dir_fd=top)
            for _, dirnames, filenames, dirfd in walk:
                for entry in (*dirnames, *filenames):
                    with contextlib.suppress(FileNotFoundError):
                        os.chown(entry, user.uid, user.gid, dir_fd=dirfd, follow_symlinks=False)
        os.chown(name, user.uid, user.gid, dir_fd=top, follow_symlinks=False)


def take_back(root: Path, sealed: DirId | None = None) -> None:
    """Make root the owner of the tree at ``root`` again, with no access for group or others
    and no setuid, setgid or sticky bit. Each directory is taken before its entries, so that
    once an entry's turn comes nobody else can replace it (by a link, say).

    ``sealed``: a directory (by :data:`DirId`) that :func:`seal` made and nobody was handed
    since; it is not walked when found still root's: nobody else could change anything in
    it (its files are root's, writable by root only), only move it whole."""
    _take(root, None)
    for _, dirnames, filenames, dirfd in os.fwalk(root, topdown=True, follow_symlinks=False):
        for name in filenames:
            with contextlib.suppress(FileNotFoundError):
                _take(name, dirfd)
        for name in list(dirnames):
            with contextlib.suppress(FileNotFoundError):
                info = _take(name, dirfd)
                if sealed is not None and info.st_uid == 0 and dir_id(info) == sealed:
                    dirnames.remove(name)


def _take(path: Path | str, dirfd: int | None) -> os.stat_result:
    info = os.stat(path, dir_fd=dirfd, follow_symlinks=False)
    os.chown(path, 0, 0, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):  # a link has no mode of its own
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700, dir_fd=dirfd)
    return info


def seal(root: Path) -> Sealed:
    """Make the tree at ``root`` root's and read-only to everyone else: each entry root's,
    writable by root only, readable (and runnable, where its owner could run it) by all,
    no setuid, setgid or sticky bit; ``root`` itself closed (0700) until its holder opens
    it. Each directory is taken before its entries, as :func:`take_back` does. Without root,
    everything is the server's already and only the modes change."""
    top = _seal(root, None)
    os.chmod(root, 0o700)
    total = 0
    for _, dirnames, filenames, dirfd in os.fwalk(root, topdown=True, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                info = _seal(name, dirfd)
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return Sealed(dir_id(top), total)


def _seal(path: Path | str, dirfd: int | None) -> os.stat_result:
    info = os.stat(path, dir_fd=dirfd, follow_symlinks=False)
    uid, gid = os.geteuid(), os.getegid()
    if info.st_uid != uid or info.st_gid != gid:
        os.chown(path, uid, gid, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        owner = stat.S_IMODE(info.st_mode) & 0o700
        readable = (owner >> 3 | owner >> 6) & 0o055  # the owner's read and run, not write
        if stat.S_IMODE(info.st_mode) != owner | readable:
            os.chmod(path, owner | readable, dir_fd=dirfd)
    return info


def dir_id(info: os.stat_result) -> DirId:
    return info.st_dev, info.st_ino
