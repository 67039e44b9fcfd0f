"""One process at a time owns a server home: a running server, or ``dynos server:restore``.

The owner holds an exclusive ``flock`` on ``<home>/server.lock`` (with its pid written in it,
for the message). The kernel drops the lock when the process ends, however it ends, so a
server killed with -9 never leaves a home locked; and two servers can never run on one
database, nor a restore replace it under a running server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from dynos.config import HomePaths
from dynos.errors import UserError


@contextlib.contextmanager
def hold_home(paths: HomePaths, advice: str) -> Iterator[None]:
    """Own ``paths.home`` while the block runs; UserError ending in ``advice`` when another
    process owns it."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"Another dynos process (pid {owner}) is using {paths.home}: {advice}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
