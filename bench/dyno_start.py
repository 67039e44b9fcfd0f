"""What a dyno's sandbox adds to its start: from LocalBackend.start to the dyno's first line.

    python bench/dyno_start.py [--rounds 40]

Each round starts one dyno whose command prints a line (``exec echo up``) and times, on the
server's event loop (uvloop), until that line arrives; then the dyno is gone. Each mode runs
in blocks of rounds (forward, then in reverse order). Modes: the
plain process (``/bin/sh -c`` spawned by hand, no sandbox: the anchor); the reaper (how a
server without root holds a dyno's processes); and, as root, a cgroup (memory, CPU, pids),
and a cgroup with a private scratch space (a mount and IPC namespace with a tmpfs over every
shared directory: what a root server does). Prints the median and the 90th percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from dynos.backends.base import DynoSpec
from dynos.backends.cgroups import Cgroups
from dynos.backends.local import LocalBackend
from dynos.backends.sandbox import Sandboxes, SharedDirectories
from dynos.core.sizes import DEFAULT_SIZE


class FirstLine:
    def __init__(self) -> None:
        self.got = asyncio.Event()
        self.gone = asyncio.Event()

    def dyno_output(self, key: str, line: str) -> None:
        self.got.set()

    def dyno_up(self, key: str) -> None:
        pass

    def dyno_exited(self, key: str, status: int) -> None:
        self.gone.set()

    def dyno_boot_timeout(self, key: str) -> None:
        pass

    def dyno_oom_killed(self, key: str) -> None:
        pass


async def by_hand(cwd: Path) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "exec echo up", cwd=cwd, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    await process.stdout.readline()
    elapsed = time.perf_counter() - started
    await process.wait()
    return elapsed


async def through(sandboxes: Sandboxes, cwd: Path, round_: int) -> float:
    events = FirstLine()
    local = LocalBackend(events, sandboxes=sandboxes)
    spec = DynoSpec(
        f"bench/{round_}",
        "bench",
        "run.1",
        "echo up",
        cwd,
        {"PATH": "/usr/bin:/bin"},
        None,
        DEFAULT_SIZE,
    )
    started = time.perf_counter()
    await local.start(spec)
    await events.got.wait()
    elapsed = time.perf_counter() - started
    await events.gone.wait()
    return elapsed


async def main(rounds: int) -> None:
    cgroups = Cgroups.detect()
    modes: dict[str, Sandboxes | None] = {"plain process (anchor)": None}
    if cgroups is not None:
        shared = SharedDirectories()
        shared.get()
        modes["cgroup (root)"] = Sandboxes(cgroups=cgroups)
        modes["cgroup + private scratch (root)"] = Sandboxes(cgroups=cgroups, shared=shared)
    modes["reaper (without root)"] = Sandboxes()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        # Each mode in a block of its own, the blocks forward then backward: starts that
        # alternate between modes disturb one another (one's exit is the next one's start).
        order = [*modes.items(), *reversed(modes.items())]
        for number, (mode, sandboxes) in enumerate(order):
            for round_ in range(rounds // 2 + 3):  # the first rounds warm caches up
                if sandboxes is None:
                    elapsed = await by_hand(cwd)
                else:
                    elapsed = await through(sandboxes, cwd, number * 1000 + round_)
                if round_ >= 3:
                    results[mode].append(elapsed * 1000)
    if cgroups is not None:
        cgroups.close()
    anchor = statistics.median(results["plain process (anchor)"])
    print(f"{'mode':34} {'median':>8} {'p90':>8} {'over anchor':>12}")
    for mode, times in results.items():
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{mode:34} {median:7.1f}ms {p90:7.1f}ms {median - anchor:+10.1f}ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    uvloop.run(main(parser.parse_args().rounds))
