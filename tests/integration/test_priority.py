"""The platform outranks what it runs (dynos.priority): the server at nice -10, its dynos,
builds and add-on servers back at 0."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from dynos.backends.cgroups import Cgroups
from dynos.testing.harness import wait_for_dynos
from tests.integration.conftest import EXAMPLES, RunningServer, wait_for

# As root without cgroups, sizes become nice values and dynos run at theirs (tests/test_priority.py
# and tests/backends cover that path).
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or Cgroups.detect() is None,
    reason="raising a priority needs root; dynos run at nice 0 where cgroups enforce sizes",
)


def test_the_server_outranks_its_dynos_and_add_on_servers(server: RunningServer) -> None:
    server.create_app("ranked")
    server.deploy("ranked", EXAMPLES / "hello")
    server.scale("ranked", web=2)
    wait_for_dynos(server, "ranked", {"web.1": "up", "web.2": "up"})
    if shutil.which("redis-server"):
        server.cli("addons:create", "redis", "-a", "ranked")
    platform = psutil.Process(server.process.pid)
    assert platform.nice() == -10

    def niceness() -> dict[str, int]:
        found = {}
        for child in platform.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                found[f"{child.pid} {' '.join(child.cmdline())}"] = child.nice()
        return found

    # A child between fork and exec is still a copy of the server, at its priority: the
    # dynos restarted for the add-on's release may be there, so wait for them to settle.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: set(niceness().values()) == {0}, 30, "every child at nice 0")
    children = niceness()
    assert len(children) >= 2
    assert children == dict.fromkeys(children, 0), where_stuck(children)


def where_stuck(children: dict[str, int]) -> str:
    """What the kernel says of each child not at nice 0 (still between fork and exec): where
    it sleeps, which system call, its cgroup and state, for a failure to be diagnosed."""
    said = []
    for child, nice in children.items():
        if nice == 0:
            continue
        pid = child.split()[0]
        for name in ("stat", "wchan", "syscall", "stack", "cgroup"):
            with contextlib.suppress(OSError):
                said.append(f"{pid} {name}: {Path('/proc', pid, name).read_text().strip()}")
    return "\n".join(said)


def test_a_build_runs_at_the_workloads_priority() -> None:
    # In a process of its own, so that this test's process keeps its priority.
    script = textwrap.dedent(
        """
        import asyncio
        import os
        import tempfile
        from pathlib import Path
        from dynos.platform.build import Builder, _Step
        from dynos.core.sizes import DEFAULT_SIZE
        from dynos.priority import raise_platform_priority

        async def main():
            raise_platform_priority(-10)
            builder = Builder("python3", Path(tempfile.mkdtemp()))
            argv = ("sh", "-c", "cut -d' ' -f19 /proc/self/stat")
            deadline = asyncio.get_running_loop().time() + 30
            env = {"PATH": os.environ["PATH"]}
            where = _Step("build-priority", Path("/"), env, DEFAULT_SIZE, None, ())
            async for line in builder._run(argv, where, deadline):
                print(line)

        asyncio.run(main())
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.split() == ["0"]
