"""The server's watchdog, as root: when the server dies, its dynos die with it.

    python3 -I -S watchdog.py SERVER_PID PARENT_CGROUP_DIR...

Started by a root server once, it waits. Its parent-death signal (SIGTERM) comes when the
server dies without stopping its dynos (kill -9, a crash): it then kills every process in
every cgroup below the server's parent groups, whatever session they left for, removes the
groups, and exits. When the server stops normally it stands the watchdog down (SIGUSR1), its
dynos already stopped. If the watchdog is killed along with the server, the next server on
the same home reaps the groups (cgroups.Cgroups.reap_leftovers). Without root each dyno's
reaper (reaper.py) does the same for its own dyno.

Standalone (``-I -S``, nothing of dynos imported): a copy of the server's interpreter, not of
the server.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy knows by name, without typing's import
if TYPE_CHECKING:
    import signal
else:  # the C module: ``signal`` would import enum
    import _signal as signal

PR_SET_PDEATHSIG = 1
STAND_DOWN = signal.SIGUSR1
KILL_WAIT = 5.0  # seconds for each group's processes to be gone


def kill_groups(parents: list[str]) -> None:
    """SIGKILL every process in each cgroup below ``parents`` until none is left (a process
    may fork meanwhile: the pids limit bounds that), then remove the groups."""
    for parent in parents:
        try:
            groups = [e.path for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for group in groups:
            deadline = time.monotonic() + KILL_WAIT
            while time.monotonic() < deadline:
                try:
                    with open(os.path.join(group, "cgroup.procs")) as file:
                        pids = [int(line) for line in file.read().split()]
                except (OSError, ValueError):
                    break
                if not pids:
                    break
                for pid in pids:
                    try:  # noqa: SIM105 (not contextlib: nothing more is imported)
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.01)
            for _ in range(50):  # the kernel may take a moment to let go of the exited
                try:
                    os.rmdir(group)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def main(args: list[str]) -> None:
    server, parents = int(args[0]), args[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the server's terminal
    # Blocked, so that one that comes early waits for sigwait below instead of being lost.
    awaited = {signal.SIGTERM, STAND_DOWN}
    signal.pthread_sigmask(signal.SIG_BLOCK, awaited)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), 0, 0, 0) != 0:
        sys.exit(f"watchdog: prctl: {os.strerror(ctypes.get_errno())}")
    while os.getppid() == server:
        if signal.sigwait(awaited) == STAND_DOWN:
            return
        # SIGTERM: the parent-death signal, or one sent to the whole service (systemd),
        # while the server stops its dynos with their grace period: only the former counts.
    kill_groups(parents)  # the server died (before the signal was set, or since)


if __name__ == "__main__":
    main(sys.argv[1:])
