"""Per-dyno control groups: the memory limit (R15 at twice the quota), CPU weight, pids limit.

Each dyno gets one cgroup per controller under a parent named for this server process, so
several servers on one machine (as in the tests) never share or remove each other's groups.
cgroup v1 (a hierarchy per controller, as on this machine) and v2 (one unified hierarchy)
are both handled; which one is chosen is said at server start.
"""

from __future__ import annotations

import contextlib
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


@dataclass(frozen=True)
class DynoCgroup:
    """The directories of one dyno's cgroup(s); ``procs`` are the files a process joins by."""

    dirs: tuple[Path, ...]
    memory_dir: Path

    @property
    def procs(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self.dirs)


class Cgroups:
    def __init__(self, version: int, root: Path = ROOT) -> None:
        self.version = version
        self._root = root
        self._parent = f"dynos-{os.getpid()}"

    @classmethod
    def detect(cls, root: Path = ROOT) -> Cgroups | None:
        """Cgroups if this process may use them (root, a writable hierarchy), else None."""
        if os.geteuid() != 0:
            return None
        v1 = [root / c for c in ("memory", "cpu", "pids")]
        if all((d / "cgroup.procs").exists() for d in v1) and os.access(v1[0], os.W_OK):
            return cls(1, root)
        controllers = root / "cgroup.controllers"
        if controllers.exists() and {"memory", "cpu", "pids"} <= set(
            controllers.read_text().split()
        ):
            return cls(2, root)
        return None

    @property
    def description(self) -> str:
        return f"cgroup v{self.version}"

    def create(self, name: str, size: DynoSize) -> DynoCgroup:
        """Make the dyno's cgroup(s) with the size's limits. ``name`` must be unique."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        limit = size.memory_limit_bytes
        if self.version == 1:
            memory = self._make(self._root / "memory", safe)
            cpu = self._make(self._root / "cpu", safe)
            pids = self._make(self._root / "pids", safe)
            _write(memory / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):  # only where swap accounting is on
                _write(memory / "memory.memsw.limit_in_bytes", limit)
            _write(cpu / "cpu.shares", CPU_SHARES_PER_UNIT * size.cpu_share)
            _write(pids / "pids.max", size.max_processes)
            return DynoCgroup((memory, cpu, pids), memory)
        parent = self._root / self._parent
        if not parent.exists():
            parent.mkdir()
            _write(parent / "cgroup.subtree_control", "+memory +cpu +pids")
        group = self._make(self._root, safe)
        _write(group / "memory.max", limit)
        with contextlib.suppress(OSError):
            _write(group / "memory.swap.max", 0)
        _write(group / "cpu.weight", min(10000, CPU_WEIGHT_PER_UNIT * size.cpu_share))
        _write(group / "pids.max", size.max_processes)
        return DynoCgroup((group,), group)

    def _make(self, hierarchy: Path, name: str) -> Path:
        path = hierarchy / self._parent / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def memory_used(self, group: DynoCgroup) -> int:
        """Resident memory (anonymous + swap) of the dyno's processes, in bytes."""
        stat = _read_stat(group.memory_dir / "memory.stat")
        if self.version == 1:
            return stat.get("total_rss", 0) + stat.get("total_swap", 0)
        swap = 0
        with contextlib.suppress(OSError, ValueError):
            swap = int((group.memory_dir / "memory.swap.current").read_text())
        return stat.get("anon", 0) + swap

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

    def reap_orphans(self) -> int:
        """Kill the dynos of servers that died without stopping them (SIGKILL, a crash).

        Their cgroups (``dynos-<pid>`` of a pid no longer running) still hold the processes:
        kill those and remove the groups. Returns how many processes were killed.
        """
        killed: set[int] = set()
        for hierarchy in ("memory", "cpu", "pids") if self.version == 1 else ("",):
            for parent in (self._root / hierarchy).glob("dynos-*"):
                pid = parent.name.removeprefix("dynos-")
                if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                    continue
                groups = [d for d in parent.iterdir() if d.is_dir()]
                for group in groups:
                    with contextlib.suppress(OSError):
                        for line in (group / "cgroup.procs").read_text().split():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(line), signal.SIGKILL)
                                killed.add(int(line))
                self.remove(DynoCgroup((*groups, parent), parent))
        return len(killed)

    def close(self) -> None:
        """Remove this server's parent cgroups (they are empty once every dyno stopped)."""
        hierarchies = ("memory", "cpu", "pids") if self.version == 1 else ("",)
        for hierarchy in hierarchies:
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
