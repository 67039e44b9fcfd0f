"""What a dyno's sandbox adds to its start: from LocalBackend.start to the dyno's first line.

    python bench/dyno_start.py [--rounds 40] [--slug-mb 100]

Each round starts one dyno, in a release of ``--slug-mb`` MB (1000 files in 10
directories), whose command prints a line (``exec echo up``) and times, on the server's
event loop (uvloop), until that line arrives; then the dyno is gone. Each mode runs in
blocks of rounds (forward, then in reverse order). Modes: the plain process (``/bin/sh -c``
spawned by hand, no sandbox: the anchor); the reaper (how a server without root holds a
dyno's processes), in the release itself as before issue 13, with an overlay in a user
namespace of its own (its writable app directory without root, appdir.py, where the kernel
allows one) and in a copy of the release (where it does not); and, as root, a cgroup (memory, CPU,
pids), a cgroup with a private scratch space (a mount and IPC namespace with a tmpfs over
every shared directory) in the release itself as before issue 13, and the same with the
overlay that makes the app directory writable (what a root server does). Prints the median
and the 90th percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from dynos.backends.appdir import (
    AppCopy,
    AppOverlay,
    UnprivilegedOverlay,
    unprivileged_overlay_works,
)
from dynos.backends.base import DynoSpec
from dynos.backends.cgroups import Cgroups
from dynos.backends.local import LocalBackend
from dynos.backends.sandbox import Sandboxes, SharedDirectories
from dynos.backends.scratch import Scratch
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


def make_release(directory: Path, megabytes: int) -> None:
    """A release of ``megabytes``: 1000 files of random bytes in 10 directories."""
    size = megabytes * 1024 * 1024 // 1000
    for number in range(1000):
        subdirectory = directory / f"pkg{number % 10}"
        subdirectory.mkdir(exist_ok=True)
        (subdirectory / f"module{number}.py").write_bytes(os.urandom(size))


async def main(rounds: int, slug_mb: int) -> None:
    cgroups = Cgroups.detect()
    # Under /var/tmp: on a disk, as a server's home is (/tmp may be a tmpfs elsewhere).
    tmp = tempfile.TemporaryDirectory(dir="/var/tmp")
    cwd = Path(tmp.name) / "release"
    cwd.mkdir()
    make_release(cwd, slug_mb)
    copies = AppCopy(Path(tmp.name) / "app-dirs")
    modes: dict[str, Sandboxes | None] = {"plain process (anchor)": None}
    if cgroups is not None:
        shared = SharedDirectories()
        shared.get()
        modes["cgroup (root)"] = Sandboxes(cgroups=cgroups)
        modes["cgroup + scratch, before (root)"] = Sandboxes(
            cgroups=cgroups, shared=shared, app_overlays=False
        )
        modes["cgroup + scratch + app overlay (root)"] = Sandboxes(cgroups=cgroups, shared=shared)
    modes["reaper, before (without root)"] = Sandboxes()
    if unprivileged_overlay_works(Path(tmp.name)):
        modes["reaper + user-ns app overlay (no root)"] = Sandboxes(unprivileged_overlays=True)
    modes["reaper + app copy (without root)"] = Sandboxes(app_copies=copies)
    with tmp:
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
        setups = setup_costs(cwd, shared if cgroups is not None else None, rounds)
    if cgroups is not None:
        cgroups.close()
    anchor = statistics.median(results["plain process (anchor)"])
    print(f"release: {slug_mb} MB in 1000 files")
    print(f"{'mode':38} {'median':>8} {'p90':>8} {'over anchor':>12}")
    for mode, times in results.items():
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{mode:38} {median:7.1f}ms {p90:7.1f}ms {median - anchor:+10.1f}ms")
    print("\nthe child's setup alone (between fork and exec), less sensitive to load:")
    for mode, times in setups.items():
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{mode:38} {median:7.2f}ms {p90:7.2f}ms")


def setup_time(setup: Callable[[], None]) -> float:
    """Milliseconds ``setup`` takes in a forked child, where a dyno's setup runs."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: time it, say it, leave (no loop, no cleanup)
        started = time.perf_counter()
        setup()
        os.write(write, str(time.perf_counter() - started).encode())
        os._exit(0)
    os.close(write)
    said = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    return float(said) * 1000


def setup_costs(
    release: Path, shared: SharedDirectories | None, rounds: int
) -> dict[str, list[float]]:
    """The mounts alone: as root a private scratch without and with the app overlay, and
    without root the overlay in a user namespace."""
    size = 64 * 1024 * 1024
    setups: dict[str, Callable[[], None]] = {}
    if shared is not None:
        visible = (release,)
        setups["scratch, before (root)"] = Scratch(shared.get(), size, visible).enter
        overlay = AppOverlay(release, os.geteuid(), os.getegid())
        setups["scratch + app overlay (root)"] = Scratch(shared.get(), size, visible, overlay).enter
    if unprivileged_overlay_works(release.parent):
        setups["user-ns app overlay (no root)"] = UnprivilegedOverlay(release, size).enter
    return {mode: [setup_time(setup) for _ in range(rounds)] for mode, setup in setups.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--slug-mb", type=int, default=100)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.rounds, arguments.slug_mb))
