"""The web half of bench/autoscale.py: a step of open-loop load on the serial app, autoscaled
against a fixed formation sized for the peak.

    python bench/autoscale_web.py [--phases 60:5,180:60,150:5] [--max 8] [--no-anchor]

A private dynos server runs ``bench/apps/serial_web`` (one request at a time, 50 ms each: one
dyno answers 20 requests/s). The load is open-loop: requests leave at a fixed rate whatever
the answers do (each its own task), so a slow formation meets a growing backlog, not a
politely waiting client; a request's latency counts from when it was due to leave, so a
client that fell behind does not hide a wait. The profile (``--phases``, seconds:rate) steps
from 5 to 60 requests/s and back. Two runs under the same profile, in the same server:

- *autoscaled*: web=1, then ``ps:autoscale:enable web --min 1 --max 8 --p95 500``;
- *fixed*: web=4 (60 requests/s needs 3 dynos at full tilt; 4 leaves the queue short), set by
  ``ps:scale``, which also turns the autoscaling off.

Reported for each: the time from the step until the p95 of the client-measured latency (per
5 s bucket of the requests due in it) is under the target and stays there for the rest of
the run; the failed requests, and the H codes the router logged for them (its ``at=error``
lines, streamed); the dyno-seconds (the web dynos up, read from the API each
second, summed over the run); for the autoscaled run the ``app[autoscaler]`` decisions, with
the seconds from the step, and their reversals (a change of direction).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_server import dynos_up, machine, private_server, scale_and_wait, wait_until

from dynos.testing.harness import RunningServer

APP = "serial"
APP_DIR = Path(__file__).resolve().parent / "apps" / "serial_web"
P95_TARGET_MS = 500
BUCKET = 5.0  # seconds per p95 bucket
REVERSALS_TARGET = 1
SCALE = re.compile(r"scale from=(\d+) to=(\d+)")
CODE = re.compile(r" at=error code=(H\d+) ")
FIXED = 4  # the fixed formation sized for the peak


@dataclass
class Run:
    name: str
    sent: list[tuple[float, float | None]] = field(default_factory=list)  # (due, latency|None)
    dynos: list[tuple[float, int]] = field(default_factory=list)  # (seconds, web dynos up)
    loads: list[float] = field(default_factory=list)  # 1-min load average, each second
    failures: Counter[str] = field(default_factory=Counter)  # "503", "ReadTimeout", ...

    @property
    def failed(self) -> int:
        return sum(1 for _, latency in self.sent if latency is None)

    @property
    def dyno_seconds(self) -> float:
        return float(sum(up for _, up in self.dynos))  # one sample a second

    def buckets(self) -> list[tuple[float, float | None, int]]:
        """(bucket start, p95 ms of its answered requests or None, its failures)."""
        end = max((due for due, _ in self.sent), default=0.0)
        rows = []
        for index in range(int(end // BUCKET) + 1):
            inside = [lat for due, lat in self.sent if index * BUCKET <= due < (index + 1) * BUCKET]
            answered = sorted(lat for lat in inside if lat is not None)
            p95 = _p95(answered) if answered else None
            rows.append((index * BUCKET, p95, len(inside) - len(answered)))
        return rows

    def recovery(self, step: float) -> float | None:
        """Seconds from ``step`` to the start of the first bucket after which every bucket's
        p95 is under the target (a failure counts as over); None if it never settled."""
        settled: float | None = None
        for start, p95, failures in self.buckets():
            if start + BUCKET <= step:
                continue
            good = p95 is not None and p95 * 1000 < P95_TARGET_MS and failures == 0
            if not good:
                settled = None
            elif settled is None:
                settled = max(start, step)
        return None if settled is None else settled - step


def _p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def open_loop(port: int, phases: list[tuple[float, float]], run: Run) -> None:
    """Send requests at each phase's rate for its seconds, never waiting for answers."""
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Host": f"{APP}.localhost"},
        limits=limits,
        timeout=60,
    ) as client:
        began = time.monotonic()

        async def one(due: float) -> None:
            try:
                response = await client.get("/")
            except httpx.HTTPError as exc:
                run.sent.append((due - began, None))
                run.failures[type(exc).__name__] += 1
                return
            if response.status_code != 200:
                run.failures[str(response.status_code)] += 1
            latency = time.monotonic() - due
            run.sent.append((due - began, latency if response.status_code == 200 else None))

        tasks = []
        offset = 0.0
        for seconds, rate in phases:
            for index in range(int(seconds * rate)):
                due = began + offset + index / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(one(due)))
            offset += seconds
        await asyncio.gather(*tasks)


def sample_dynos(server: RunningServer, run: Run, stop: threading.Event) -> None:
    """Each second: how many web dynos are up (from the API) and the load average."""
    began = time.monotonic()
    tick = 0
    while not stop.is_set():
        run.dynos.append((time.monotonic() - began, dynos_up(server, APP, "web")))
        run.loads.append(os.getloadavg()[0])
        tick += 1
        stop.wait(max(0.0, began + tick - time.monotonic()))


def measure(server: RunningServer, run: Run, phases: list[tuple[float, float]]) -> None:
    stop = threading.Event()
    sampler = threading.Thread(target=sample_dynos, args=(server, run, stop), daemon=True)
    sampler.start()
    try:
        asyncio.run(open_loop(server.router_port, phases, run))
    finally:
        stop.set()
        sampler.join()


@contextmanager
def streamed_lines(server: RunningServer, dyno: str, marker: str) -> Iterator[list[str]]:
    """The app's log lines of ``dyno`` (``autoscaler``, ``router``) that hold ``marker``,
    logged while inside, with their timestamps. Streamed (``logs -t``): the app's log ring
    holds 5,000 lines, a minute and a half of router lines at 60 requests/s, so the step's
    decisions would be gone by the end of the run."""
    env = {**os.environ, "DYNOS_HOME": str(server.home)}
    env.pop("DYNOS_API_URL", None)
    env.pop("DYNOS_API_KEY", None)
    tail = subprocess.Popen(
        [sys.executable, "-m", "dynos", "logs", "-t", "-n", "0", "-d", dyno, "-a", APP],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert tail.stdout is not None
        for line in tail.stdout:
            if marker in line:
                lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        time.sleep(1)  # the last lines on their way
        tail.terminate()
        tail.wait(timeout=10)
        reader.join(timeout=5)


def autoscaler_lines(server: RunningServer) -> AbstractContextManager[list[str]]:
    return streamed_lines(server, "autoscaler", "app[autoscaler]: ")


def router_errors(server: RunningServer) -> AbstractContextManager[list[str]]:
    """The router's ``at=error`` lines: which H code answered each failed request."""
    return streamed_lines(server, "router", " at=error ")


def error_codes(lines: list[str]) -> dict[str, int]:
    return dict(Counter(m[1] for m in map(CODE.search, lines) if m))


def reversals(lines: list[str]) -> int:
    """Changes of direction among the decisions' ``scale from=A to=B``."""
    changes = [(int(m[1]), int(m[2])) for m in map(SCALE.search, lines) if m]
    directions = [1 if new > old else -1 for old, new in changes if new != old]
    return sum(1 for a, b in itertools.pairwise(directions) if a != b)


def changes_of(run: Run) -> list[tuple[float, int, int]]:
    """(seconds, from, to) whenever the count of web dynos up changed."""
    found = []
    for (_, before), (at, after) in zip(run.dynos, run.dynos[1:], strict=False):
        if after != before:
            found.append((at, before, after))
    return found


def report(run: Run, step: float) -> float | None:
    recovery = run.recovery(step)
    answered = sorted(lat for _, lat in run.sent if lat is not None)
    loads = run.loads or [0.0]
    print(
        f"{run.name}: {len(run.sent)} requests, failed {run.failed} {dict(run.failures)}, p95 "
        f"{_p95(answered) * 1000:.0f} ms, max {answered[-1] * 1000:.0f} ms; p95 back under "
        f"{P95_TARGET_MS} ms "
        + (f"{recovery:.0f} s after the step" if recovery is not None else "NEVER (to the end)")
        + f"; {run.dyno_seconds:.0f} dyno-seconds; load average {min(loads):.1f}.."
        f"{max(loads):.1f} (mean {statistics.fmean(loads):.1f})"
    )
    shown = " ".join(
        f"{start:.0f}:{'-' if p95 is None else f'{p95 * 1000:.0f}'}{'!' * (failures > 0)}"
        for start, p95, failures in run.buckets()
    )
    print("  (a 503 is the router's: H12 after 30 s without an answer, H19 after a 5 s connect)")
    print(f"  p95 ms per {BUCKET:g} s bucket (s:ms, ! = failures): {shown}")
    print(
        "  web dynos up (s: from->to): "
        + (", ".join(f"{at:.0f}: {a}->{b}" for at, a, b in changes_of(run)) or "no change")
    )
    return recovery


def web(args: argparse.Namespace, server: RunningServer) -> bool:
    """The autoscaled run, then (``args.anchor``) the fixed one; whether the targets are met."""
    phases = [(float(s), float(r)) for s, r in (p.split(":") for p in args.phases.split(","))]
    step = phases[0][0]  # the step up comes at the end of the first phase
    profile = ", ".join(f"{s:g} s at {r:g}/s" for s, r in phases)
    print(f"\nweb: serial app (50 ms, one at a time), open loop: {profile}")
    server.create_app(APP)
    server.deploy(APP, APP_DIR)
    scale_and_wait(server, APP, "web", 1)
    server.cli(
        *("ps:autoscale:enable", "web", "--min", "1", "--max", str(args.max)),
        *("--p95", str(P95_TARGET_MS), "-a", APP),
    )
    wait_until(lambda: "watching" in server.cli("ps:autoscale", "-a", APP).stdout, 30, "the watch")
    auto = Run(f"autoscaled 1..{args.max}")
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with autoscaler_lines(server) as said, router_errors(server) as errors:
        measure(server, auto, phases)
    auto_recovery = report(auto, step)
    print(f"  router errors by H code: {error_codes(errors) or 'none'}")
    for line in errors[:5]:
        print(f"    {line}")
    print(
        f"  app[autoscaler] lines ({len(said)}; the load began at {started}Z, "
        f"the step {step:g} s later):"
    )
    for line in said:
        print(f"    {line}")
    flips = reversals(said)
    ended_at = auto.dynos[-1][1] if auto.dynos else 0
    peak = max((up for _, up in auto.dynos), default=0)
    came_down = ended_at < peak

    fixed = Run(f"fixed web={FIXED}")
    fixed_recovery: float | None = None
    if args.anchor:
        server.cli("ps:scale", f"web={FIXED}", "-a", APP)  # turns the autoscaling off, says so
        wait_until(lambda: dynos_up(server, APP, "web") == FIXED, 120, f"web={FIXED} up")
        time.sleep(10)  # the autoscaler's watch is gone; let the dynos take their first requests
        with router_errors(server) as errors:
            measure(server, fixed, phases)
        fixed_recovery = report(fixed, step)
        print(f"  router errors by H code: {error_codes(errors) or 'none'}")
    else:  # a look at the autoscaler alone: no anchor, so no ratio
        print(f"(no anchor: the fixed web={FIXED} was not run)")

    ratio = auto.dyno_seconds / fixed.dyno_seconds if args.anchor else float("nan")
    print(
        f"\nweb: p95 back under {P95_TARGET_MS} ms after the step: autoscaled "
        + (f"{auto_recovery:.0f} s" if auto_recovery is not None else "never")
        + ", fixed "
        + (f"{fixed_recovery:.0f} s" if fixed_recovery is not None else "never")
    )
    print(
        f"web: dyno-seconds autoscaled {auto.dyno_seconds:.0f} / fixed {fixed.dyno_seconds:.0f} "
        f"= {ratio:.2f}x; peak web={peak}, web={ended_at} at the end "
        f"(scale-down {'happened' if came_down else 'did not happen'})"
    )
    met_flips = flips <= REVERSALS_TARGET
    met_failed = auto.failed == 0 and fixed.failed == 0
    print(
        f"web: reversals {flips} (target <= {REVERSALS_TARGET}): {'met' if met_flips else 'MISSED'}"
    )
    print(
        f"web: failed requests autoscaled {auto.failed}, fixed {fixed.failed} (target 0): "
        f"{'met' if met_failed else 'MISSED'}"
    )
    settled = auto_recovery is not None
    print(f"web: p95 settled under {P95_TARGET_MS} ms: {'met' if settled else 'MISSED'}")
    return met_flips and met_failed and settled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max", type=int, default=8, help="the autoscaling's --max")
    parser.add_argument(
        "--phases",
        default="60:5,180:60,150:5",
        help="the web load, seconds:requests-per-second,... (the step ends the first phase)",
    )
    parser.add_argument(
        "--no-anchor",
        dest="anchor",
        action="store_false",
        help="skip the fixed formation (a look at the autoscaler alone: no ratio, not a figure)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with private_server() as server:
        met = web(args, server)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
