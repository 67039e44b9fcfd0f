"""``dynos stack:build``: the stack image dynos and builds run in, made without Docker Hub.

A Debian root filesystem by debootstrap (minbase and what builds need:
``core.containers.STACK_PACKAGES``), packed as a tarball kept in a cache directory (a rebuild
imports it again in seconds; ``--refresh`` makes it anew), and imported into the engine with
``docker import`` under the stack image's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dynos.backends.engine import connect
from dynos.core.containers import DYNO_UID, SUITE, debootstrap_argv, import_changes
from dynos.errors import UserError


def default_cache_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/dynos")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dynos"


def build_stack(
    image: str,
    cache_dir: Path,
    *,
    mirror: str | None = None,
    refresh: bool = False,
    say: Callable[[str], None] = print,
) -> float:
    """Make ``image`` on the local engine; return the seconds it took. UserError for what is
    missing: root, debootstrap, the engine, the mirror."""
    started = time.monotonic()
    client = connect()  # before minutes of debootstrap: the engine must be there at the end
    tarball = cache_dir / f"stack-{SUITE}.tar"
    with _alone(cache_dir, say):
        if refresh or not tarball.is_file():
            _make_tarball(tarball, mirror, say)
        else:
            say(f"-----> Using the cached root filesystem {tarball} (--refresh makes it anew)")
    say(f"-----> Importing it as {image}")
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    try:
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag or "latest", changes=import_changes()
        )
        client.images.get(image)
    except Exception as exc:  # the SDK's errors and the engine's
        raise UserError(f"The Docker engine could not import {tarball}: {exc}") from None
    return time.monotonic() - started


@contextlib.contextmanager
def _alone(cache_dir: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One stack:build at a time per cache directory: two at once would each remove the
    other's root filesystem half made (they share its path). The second waits, then finds
    the first's tarball."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f"stack-{SUITE}.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("-----> Waiting for another stack:build of this cache to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # the lock goes with the file's close


def _make_tarball(tarball: Path, mirror: str | None, say: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise UserError("stack:build runs debootstrap, which needs root: run it as root.")
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed: apt-get install debootstrap.")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    rootfs = tarball.parent / f"rootfs-{SUITE}.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    argv = debootstrap_argv(str(rootfs), *([mirror] if mirror else []))
    say(f"-----> {' '.join(argv)}")
    try:
        _run(argv, say)
        _add_dyno_user(rootfs)
        # What apt downloaded is not needed in the image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".tar.tmp")
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], say)
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _add_dyno_user(rootfs: Path) -> None:
    """The unprivileged user dynos run as (uid DYNO_UID), named so that tools show a name."""
    with (rootfs / "etc/passwd").open("a") as passwd:
        passwd.write(f"dyno:x:{DYNO_UID}:{DYNO_UID}:dyno:/app:/bin/sh\n")
    with (rootfs / "etc/group").open("a") as group:
        group.write(f"dyno:x:{DYNO_UID}:\n")


def _run(argv: list[str], say: Callable[[str], None]) -> None:
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise UserError(f"Cannot run {argv[0]}: {exc.strerror}.") from None
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-4:], line.rstrip()]
        say("       " + line.rstrip())
    if process.wait() != 0:
        unreachable = any(
            "Failed getting release file" in t or "Temporary failure" in t for t in tail
        )
        hint = (
            " The Debian mirror could not be reached: check the network (or pass --mirror)."
            if unreachable
            else ""
        )
        raise UserError(f"{argv[0]} failed with status {process.returncode}.{hint}")
