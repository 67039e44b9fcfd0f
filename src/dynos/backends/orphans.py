"""The dyno processes that no cgroup holds, recorded in the server's home, so that the next
server on that home ends whatever a killed server (kill -9) left running.

Without root a dyno is its reaper's process tree (reaper.py). When the server dies, each
reaper gets its parent-death signal and kills its dyno; this registry is for what that
cannot catch: a reaper killed together with the server. It holds, per sandbox, the reaper
(the leader of the dyno's session) and the processes last seen below it (the memory watch
refreshes them every half second), each as pid *and* start time: a pid that is free again
may be another program's by the time the next server reads the file.

At start the next server kills every recorded process still running (same pid, same start
time) with all its descendants, and every process still in a recorded session: the kernel
gives no process the pid of a session that still has members, so those are the dyno's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import psutil

KILL_WAIT = 5.0  # seconds for killed orphans to be gone

Identity = tuple[int, int]  # pid, start time in clock ticks since boot


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def identify(pids: Iterable[int]) -> list[Identity]:
    found = []
    for pid in pids:
        started = start_time(pid)
        if started is not None:
            found.append((pid, started))
    return found


class ProcessRegistry:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._entries: dict[str, dict[str, list[Identity]]] = {}

    def record(self, name: str, leader: int, members: Iterable[int] = ()) -> None:
        """``leader`` (a reaper) and the processes now below it are sandbox ``name``'s."""
        entry = {"leader": identify([leader]), "members": identify(members)}
        if self._entries.get(name) != entry:
            self._entries[name] = entry
            self._write()

    def forget(self, name: str) -> None:
        if self._entries.pop(name, None) is not None:
            self._write()

    def _write(self) -> None:
        temporary = self._path.with_name(self._path.name + ".tmp")
        temporary.write_text(json.dumps(self._entries))
        temporary.replace(self._path)

    def reap(self) -> int:
        """At start, before any dyno: kill what a previous server on this home left.
        Returns how many processes were killed."""
        try:
            recorded = json.loads(self._path.read_text())
        except (OSError, ValueError):
            recorded = {}
        targets: set[int] = set()
        sessions: set[int] = set()
        for entry in recorded.values() if isinstance(recorded, dict) else ():
            with contextlib.suppress(TypeError, ValueError, KeyError):
                for pid, started in [*entry["leader"], *entry["members"]]:
                    now = start_time(int(pid))
                    if now == int(started):
                        targets.add(int(pid))
                        targets.update(_descendants(int(pid)))
                for pid, started in entry["leader"]:
                    if start_time(int(pid)) in (None, int(started)):
                        sessions.add(int(pid))  # gone, or still the same reaper
        targets.update(_in_sessions(sessions))
        targets.discard(os.getpid())
        processes = []
        for pid in targets:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                process.send_signal(signal.SIGKILL)
                processes.append(process)
        psutil.wait_procs(processes, timeout=KILL_WAIT)
        self._entries = {}
        self._path.unlink(missing_ok=True)
        return len(processes)


def _descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _in_sessions(sessions: set[int]) -> list[int]:
    if not sessions:
        return []
    found = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) in sessions:
                found.append(pid)
    return found
