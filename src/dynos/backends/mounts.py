"""Where on this machine an unprivileged user can leave files, found rather than listed.

A dyno's user can create files only in directories it may write and search: those open to
every user (``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock``, and whatever else a machine
has), and those it made there itself. :func:`shared_directories` finds the first kind on
every mounted filesystem, so that each dyno gets private copies of them all (scratch.py);
:func:`files_owned_by` finds what given users own anywhere they could reach, so that a
user's uid is never handed on while its files remain (isolation.py).

Both walk the filesystems with ``find`` and prune every directory that other users cannot
enter: a user who cannot reach a place can neither have written there nor read there.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Kernel interfaces, not storage: nothing a dyno writes can stay behind in them.
PSEUDO_FILESYSTEMS = frozenset(
    {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs"}
    | {"pstore", "bpf", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "nsfs"}
    | {"rpc_pipefs", "selinuxfs", "nfsd"}
)


@dataclass(frozen=True)
class Mount:
    target: Path
    fstype: str
    read_only: bool


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/<pid>/mountinfo``, in its order (each mount after its parent)."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        options = set(fields[5].split(",")) | set(tail[2].split(","))
        mounts.append(Mount(Path(_unescape(fields[4])), tail[0], "ro" in options))
    return mounts


def storage_mounts(mountinfo: str | None = None) -> list[Path]:
    """The writable, non-pseudo mount points that other users can reach, each once."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    seen: set[Path] = set()
    found = []
    for mount in parse_mountinfo(mountinfo):
        if mount.fstype in PSEUDO_FILESYSTEMS or mount.read_only or mount.target in seen:
            continue
        if _others_can_reach(mount.target):
            seen.add(mount.target)
            found.append(mount.target)
    return found


def _others_can_reach(path: Path) -> bool:
    try:
        return all(parent.stat().st_mode & 0o001 for parent in path.parents)
    except OSError:
        return False


def shared_directories() -> tuple[Path, ...]:
    """Every directory any user may create files in (write and search for others), on every
    storage mount, outermost only: what lies inside one is covered by it. Sorted."""
    found: list[Path] = []
    for mount in storage_mounts():
        if any(mount == d or d in mount.parents for d in found):
            continue  # inside a shared directory already found
        # -xdev: each mount on its own; -prune below a shared directory and where others
        # may not enter. find reports each path once; an unreadable one is skipped.
        command = ["find", str(mount), "-xdev", "-type", "d"]
        command += ["(", "-perm", "-0003", "-print0", "-prune"]
        command += ["-o", "!", "-perm", "-0001", "-prune", ")"]
        for line in _run_find(command):
            path = Path(line)
            if not any(path == d or d in path.parents for d in found):
                found.append(path)
    found = [p for p in found if not any(d in p.parents for d in found)]
    return tuple(sorted(found))


def files_owned_by(uids: set[int], gids: set[int]) -> list[Path]:
    """Every file, directory or link that one of ``uids`` owns, on every storage mount, where
    those users could reach it (a directory others may not enter is skipped unless it is
    one of ``gids``'s). A directory is listed, not what it holds."""
    if not uids:
        return []
    owners: list[str] = []
    for uid in sorted(uids):
        owners += [*(("-o",) if owners else ()), "-uid", str(uid)]
    groups: list[str] = []
    for gid in sorted(gids):
        groups += ["!", "-gid", str(gid)]
    found: list[Path] = []
    for mount in storage_mounts():
        command = ["find", str(mount), "-xdev", "(", *owners, ")", "-print0", "-prune"]
        command += ["-o", "-type", "d", "!", "-perm", "-0001", *groups, "-prune"]
        found += [Path(line) for line in _run_find(command)]
    return found


def _run_find(command: list[str]) -> list[str]:
    result = subprocess.run(command, capture_output=True, check=False)
    return [os.fsdecode(path) for path in result.stdout.split(b"\0") if path]
