"""The Linux system calls the sandbox needs and Python 3.11's ``os`` lacks, through ctypes.

``os.unshare`` only arrived in Python 3.12, and ``mount``/``umount2``/``prctl`` are not in
``os`` at all. The C library is loaded when this module is imported, in the server: a child
between fork and exec (where these calls are made) must not load a library itself, since
another thread of the server may have held the loader's lock at the fork.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
_libc.mount.argtypes += [ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.argtypes += [ctypes.c_ulong]

CLONE_NEWNS = 0x00020000  # a mount namespace of its own
CLONE_NEWIPC = 0x08000000  # System V IPC and POSIX message queues of its own
CLONE_NEWUSER = 0x10000000  # a user namespace of its own (no root needed)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000

# statvfs's flags of a mount and the mount flags that keep them in a remount (a bind's
# remount must keep them: it would otherwise lift them, and in a user namespace the kernel
# refuses to).
KEPT_MOUNT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``CLONE_NEWNS`` ...). Raises OSError."""
    _check(_libc.unshare(flags), "unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2); raises OSError naming the target."""

    def encode(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    result = _libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data))
    _check(result, f"mount on {target}")


def remount_read_only(target: str) -> None:
    """Make the bind mount at ``target`` read-only, keeping its other flags. Raises OSError."""
    current = os.statvfs(target).f_flag
    kept = sum(flag for stat_flag, flag in KEPT_MOUNT_FLAGS if current & stat_flag)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def unshare_user_and_mounts() -> None:
    """Enter a user namespace and a mount namespace of its own, without root, as the same
    uid and gid (the one mapping an unprivileged process may write; setgroups denied first,
    as the kernel requires). Capabilities in it last until exec: then they are dropped.
    Only a single-threaded process may do it (a child between fork and exec is). Raises
    OSError, also where unprivileged user namespaces are disabled."""
    uid, gid = os.geteuid(), os.getegid()  # before: in the namespace they read as unmapped
    unshare(CLONE_NEWUSER | CLONE_NEWNS)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1")):
        _write(f"/proc/self/{name}", text)
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), f"umount {target}")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), "prctl")
