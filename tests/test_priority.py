"""dynos.priority where a process may not raise a priority: as a user, not root. (As root,
tests/integration/test_priority.py checks the server and what it starts.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dynos.priority

NOBODY = 65534
SOURCE = Path(dynos.priority.__file__).read_text()


def as_user(script: str) -> list[str]:
    """The lines ``script`` prints, run as an unprivileged user by a Python of its own, with
    dynos.priority's functions defined (from its source: that user may not read this
    checkout or this Python, so root runs the system's python3 as nobody)."""
    root = os.geteuid() == 0
    ran = subprocess.run(
        [
            "/usr/bin/python3" if root else sys.executable,
            "-c",
            f"exec({SOURCE!r})\n" + textwrap.dedent(script),
        ],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/",
        preexec_fn=(lambda: os.setuid(NOBODY)) if root else None,
    )
    return ran.stdout.splitlines()


def test_without_root_the_server_says_it_keeps_its_priority() -> None:
    said, nice = as_user(
        """
        print(raise_platform_priority(-10))
        print(os.getpriority(os.PRIO_PROCESS, 0))
        """
    )
    assert said.startswith("router priority: nice 0, not -10 (raising it needs root")
    assert nice == "0"


def test_without_root_workloads_count_from_the_servers_nice_value() -> None:
    # A user's server at nice 5: a 1X dyno (3 steps down, dynos.backends.local.nice_for)
    # lands at 8 and the largest size at 5, so sizes still differ.
    assert as_user(
        """
        os.setpriority(os.PRIO_PROCESS, 0, 5)
        for nice in (3, 0):
            pid = os.fork()
            if pid == 0:
                as_workload(nice)
                print(os.getpriority(os.PRIO_PROCESS, 0), flush=True)
                os._exit(0)
            os.waitpid(pid, 0)
        """
    ) == ["8", "5"]
