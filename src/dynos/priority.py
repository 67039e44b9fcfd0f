"""CPU priority: the platform outranks what it runs.

On Heroku the router runs on machines of its own, so no dyno, however busy, slows down the
routing of requests. Here the router shares the cores with the dynos; at equal priority the
kernel preempts it whenever a dyno or a client it just woke wants the core, every request in
the router waits meanwhile, and those waits are the slowest requests (docs/performance.md:
p99 three times lower at nice -10 on two saturated cores). So the server process (router,
API, manager) runs at a higher priority, nice ``--router-priority`` (default -10, as nginx's
``worker_priority``), and everything it starts for apps (dynos, builds, add-on servers)
starts back at nice 0, or at its size's value where sizes become nice values.

Raising a priority needs root (``CAP_SYS_NICE``); without, the server says so and runs on.
Nice values order the processes of one cgroup: a server started in a cgroup of its own (a
systemd service) is weighed against the dynos' cgroups by the cgroups' weights instead.
"""

from __future__ import annotations

import contextlib
import os

WORKLOAD_NICE = 0  # dynos, builds, add-on servers


def raise_platform_priority(nice: int) -> str:
    """Run this process at ``nice``; return what to log about it."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        return (
            f"router priority: nice {current}, not {nice} (raising it needs root or "
            "CAP_SYS_NICE): the dynos can take the router's cores when they are busy"
        )
    return (
        f"router priority: nice {nice}; dynos, builds and add-on servers run at 0 (dynos at "
        "their size's nice value where sizes are nice values)"
    )


def as_workload(nice: int = WORKLOAD_NICE) -> None:
    """In a child, between fork and exec: leave the platform's priority for ``nice``.

    Without root a process cannot lower its nice value: under a server its user started at
    nice 5, say, ``nice`` counts from there (a 1X dyno at 3 runs at 8), so that sizes still
    differ.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, min(19, current + nice - WORKLOAD_NICE))
