"""Per-dyno control groups: the memory limit (R15 at twice the quota), CPU weight, pids limit;
and the one sure way to stop a dyno: every process in its cgroup, however it detached.

Each dyno (or build, or add-on server) gets one cgroup per controller under a parent named
for the server's home (``dynos-<hash of the home>``). Only one server may hold a home at a
time (server.py locks it), so a starting server knows that the groups of its home's parent
were left by a server that died, and that no other parent is its own: it reaps those, and
never touches another server's, whatever pid namespace that one runs in. A process in a
cgroup cannot leave it (moving needs root), so a dyno's processes are exactly its group's.
cgroup v1 (a hierarchy per controller, as on this machine) and v2 (one unified hierarchy)
are both handled; which one is chosen is said at server start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dynos.core.sizes import DynoSize

ROOT = Path("/sys/fs/cgroup")
CPU_SHARES_PER_UNIT = 1024  # v1 cpu.shares of a 1X dyno (the kernel's default weight)
CPU_WEIGHT_PER_UNIT = 100  # v2 cpu.weight of a 1X dyno (the kernel's default weight)
V1_CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class Limits:
    """What one cgroup holds its processes to."""

    memory_bytes: int  # the hard limit: the kernel kills past it
    cpu_share: int  # in units of a Standard-1X dyno's weight
    max_processes: int

    @classmethod
    def of(cls, size: DynoSize) -> Limits:
        return cls(size.memory_limit_bytes, size.cpu_share, size.max_processes)


@dataclass(frozen=True)
class DynoCgroup:
    """The directories of one dyno's cgroup(s); ``procs`` are the files a process joins by."""

    dirs: tuple[Path, ...]
    memory_dir: Path

    @property
    def procs(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self.dirs)


def parent_name(home: Path | str) -> str:
    """The parent cgroup of the server on ``home``: the same for every server on it."""
    digest = hashlib.sha256(os.fsencode(str(Path(home).resolve()))).hexdigest()
    return f"dynos-{digest[:16]}"


class Cgroups:
    def __init__(self, version: int, root: Path = ROOT, *, home: Path | None = None) -> None:
        """``home``: the server's; without one (a tool, a test) the groups are this
        process's alone, named for its pid, and never reaped by anyone."""
        self.version = version
        self._root = root
        self._parent = parent_name(home) if home is not None else f"dynos-pid-{os.getpid()}"

    @classmethod
    def detect(cls, root: Path = ROOT, *, home: Path | None = None) -> Cgroups | None:
        """Cgroups if this process may use them (root, a writable hierarchy), else None."""
        if os.geteuid() != 0:
            return None
        v1 = [root / c for c in V1_CONTROLLERS]
        if all((d / "cgroup.procs").exists() for d in v1) and os.access(v1[0], os.W_OK):
            return cls(1, root, home=home)
        controllers = root / "cgroup.controllers"
        if controllers.exists() and set(V1_CONTROLLERS) <= set(controllers.read_text().split()):
            return cls(2, root, home=home)
        return None

    @property
    def description(self) -> str:
        return f"cgroup v{self.version}"

    def create(self, name: str, limits: Limits | DynoSize) -> DynoCgroup:
        """Make the cgroup(s) ``name`` (unique among this server's) with ``limits``
        (a dyno size's, or any)."""
        if isinstance(limits, DynoSize):
            limits = Limits.of(limits)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        limit = limits.memory_bytes
        if self.version == 1:
            memory = self._make(self._root / "memory", safe)
            cpu = self._make(self._root / "cpu", safe)
            pids = self._make(self._root / "pids", safe)
            _write(memory / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):  # only where swap accounting is on
                _write(memory / "memory.memsw.limit_in_bytes", limit)
            _write(cpu / "cpu.shares", CPU_SHARES_PER_UNIT * limits.cpu_share)
            _write(pids / "pids.max", limits.max_processes)
            return DynoCgroup((memory, cpu, pids), memory)
        parent = self._root / self._parent
        if not parent.exists():
            parent.mkdir()
            _write(parent / "cgroup.subtree_control", "+memory +cpu +pids")
        group = self._make(self._root, safe)
        _write(group / "memory.max", limit)
        with contextlib.suppress(OSError):
            _write(group / "memory.swap.max", 0)
        _write(group / "cpu.weight", min(10000, CPU_WEIGHT_PER_UNIT * limits.cpu_share))
        _write(group / "pids.max", limits.max_processes)
        return DynoCgroup((group,), group)

    def _make(self, hierarchy: Path, name: str) -> Path:
        path = hierarchy / self._parent / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def memory_used(self, group: DynoCgroup) -> int:
        """Memory of the dyno's processes, in bytes: resident (anonymous), swap, and the
        tmpfs pages they wrote (its scratch: /tmp, /dev/shm), which are charged to it too."""
        stat = _read_stat(group.memory_dir / "memory.stat")
        if self.version == 1:
            return stat.get("total_rss", 0) + stat.get("total_swap", 0) + stat.get("total_shmem", 0)
        swap = 0
        with contextlib.suppress(OSError, ValueError):
            swap = int((group.memory_dir / "memory.swap.current").read_text())
        return stat.get("anon", 0) + swap + stat.get("shmem", 0)

    def memory_stat(self, group: DynoCgroup) -> tuple[int, int, int, int, int]:
        """(rss, swap, cache, pgpgin, pgpgout) of the group: memory in bytes, paging in
        pages (v2 counts no pages paged: 0)."""
        stat = _read_stat(group.memory_dir / "memory.stat")
        if self.version == 1:
            return (
                stat.get("total_rss", 0),
                stat.get("total_swap", 0),
                stat.get("total_cache", 0),
                stat.get("total_pgpgin", 0),
                stat.get("total_pgpgout", 0),
            )
        swap = 0
        with contextlib.suppress(OSError, ValueError):
            swap = int((group.memory_dir / "memory.swap.current").read_text())
        return stat.get("anon", 0), swap, stat.get("file", 0), 0, 0

    def members(self, group: DynoCgroup) -> list[int]:
        """The live processes in the group (an exited one waiting to be reaped is not)."""
        try:
            pids = [int(p) for p in group.procs[-1].read_text().split()]
        except (OSError, ValueError):
            return []
        return [pid for pid in pids if not _is_zombie(pid)]

    def signal_all(self, group: DynoCgroup, sig: signal.Signals) -> int:
        """Send ``sig`` to every process in the group; returns how many there were."""
        pids = self.members(group)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return len(pids)

    def kill_all(self, group: DynoCgroup) -> bool:
        """SIGKILL every process in the group, once (v2 with cgroup.kill: the kernel does it,
        forks racing included). Returns whether any process was left to kill; call again
        until it returns False, since a process may fork between the listing and its kill
        (the pids limit bounds how often)."""
        kill_file = group.dirs[0] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, 1)
        return self.signal_all(group, signal.SIGKILL) > 0

    def oom_killed(self, group: DynoCgroup) -> bool:
        """Whether the kernel killed a process of the dyno for crossing its memory limit."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return _read_stat(group.memory_dir / name).get("oom_kill", 0) > 0

    def remove(self, group: DynoCgroup) -> None:
        """Remove the dyno's cgroups; its processes are gone, the kernel may lag a moment."""
        for path in group.dirs:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

    def reap_leftovers(self, timeout: float = 5.0) -> int:
        """At start, before any dyno: kill what a server that died on this home (SIGKILL, a
        crash) left in its groups, and remove them. Groups of other parents are other
        servers', alive or not, and are left alone. Returns how many processes were killed."""
        killed: set[int] = set()
        for hierarchy in self._hierarchies:
            parent = self._root / hierarchy / self._parent
            with contextlib.suppress(FileNotFoundError):
                for directory in [d for d in parent.iterdir() if d.is_dir()]:
                    group = DynoCgroup((directory,), directory)
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        pids = self.members(group)
                        if not pids:
                            break
                        killed.update(pids)
                        self.kill_all(group)
                        time.sleep(0.01)
                    self.remove(group)
        return len(killed)

    @property
    def _hierarchies(self) -> tuple[str, ...]:
        return V1_CONTROLLERS if self.version == 1 else ("",)

    @property
    def parent_dirs(self) -> tuple[Path, ...]:
        """This server's parent groups (one per hierarchy), which hold all of its groups."""
        return tuple(self._root / hierarchy / self._parent for hierarchy in self._hierarchies)

    def close(self) -> None:
        """Remove this server's parent cgroups (they are empty once every dyno stopped)."""
        for hierarchy in self._hierarchies:
            with contextlib.suppress(OSError):
                (self._root / hierarchy / self._parent).rmdir()


def join(procs: tuple[Path, ...]) -> None:
    """Move the calling process into the cgroups (run in the child between fork and exec)."""
    pid = str(os.getpid()).encode()
    for path in procs:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return True  # gone already
    return stat[stat.rindex(b")") + 2 :].startswith(b"Z")


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _read_stat(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, number = line.partition(" ")
            if number.strip().isdigit():
                values[key] = int(number)
    return values
