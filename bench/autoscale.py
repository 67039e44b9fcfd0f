"""Autoscaling: does the worker autoscaler wake from zero fast and drain like a fixed formation?

    python bench/autoscale.py [--jobs 400] [--seconds 0.1] [--max 8] [--cooldown 10]

Workers. A private dynos server runs ``examples/queue`` (RQ on a managed Redis add-on). The
anchor, in the same run: a fixed ``worker=8`` formation, up and registered, drains a backlog
of ``--jobs`` jobs of ``--seconds`` each. Then the formation goes to worker=0 and autoscaling
is enabled (``--min 0 --max 8 --queue rq:default --per-dyno 20``) and the same backlog arrives
at the empty queue. Reported:
- the time from the enqueue to the first job started (a worker dyno's boot included; target
  <= 1.5 s), from the app's own clock (the jobs record when the first one began);
- the drain time against the fixed worker=8's (target <= 1.3x);
- the time from the queue's end to worker=0 (the cooldown plus the stop);
- every job ran once (none lost, none twice), and the autoscaler's decisions from the log.
Needs redis-server and PyPI (the app's build installs rq and redis).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from autoscale_web import web
from bench_server import dynos_up, machine, private_server, scale_and_wait, wait_until

from dynos.testing.harness import RunningServer

APP = "queue"
APP_DIR = Path(__file__).resolve().parents[1] / "examples" / "queue"
FIRST_JOB_TARGET = 1.5  # seconds from the enqueue to the first job started
DRAIN_TARGET = 1.3  # autoscaled drain time against a fixed worker=MAX


def stats(server: RunningServer) -> dict[str, Any]:
    with server.router(APP) as web:
        response = web.get("/stats")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def drain(server: RunningServer, jobs: int, seconds: float) -> tuple[float, float, dict[str, Any]]:
    """Enqueue ``jobs`` at once; (seconds until every job ran, seconds from the enqueue to
    the first job's start, the final stats)."""
    with server.router(APP) as web:
        web.post("/reset").raise_for_status()
        started = time.monotonic()
        answer = web.post("/jobs", params={"count": jobs, "seconds": seconds})
    answer.raise_for_status()
    enqueued_at = answer.json()["enqueued_at"]
    while True:
        now = stats(server)
        if now["ran"] >= jobs and now["queued"] == 0:
            return time.monotonic() - started, now["first_started"] - enqueued_at, now
        if time.monotonic() - started > jobs * seconds * 3 + 60:
            raise SystemExit(f"the backlog did not drain: {now}")
        time.sleep(0.02)


def intact(final: dict[str, Any], jobs: int) -> bool:
    return bool(final["ran"] == jobs and final["ran_twice"] == 0 and final["failed"] == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("workers", "web"), help="run one part (default both)")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--max", type=int, default=8)
    parser.add_argument("--per-dyno", type=int, default=20)
    parser.add_argument("--cooldown", type=int, default=10)
    parser.add_argument(
        "--phases",
        default="60:5,180:60,150:5",
        help="the web load, seconds:requests-per-second,... (the step ends the first phase)",
    )
    parser.set_defaults(anchor=True)  # autoscale_web.py's --no-anchor
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    met = True
    if args.only in (None, "workers"):
        with private_server() as server:
            met = workers(args, server) and met
    if args.only in (None, "web"):
        with private_server() as server:
            met = web(args, server) and met
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if met else 1


def workers(args: argparse.Namespace, server: RunningServer) -> bool:
    print(
        f"\nworkers: {args.jobs} jobs of {args.seconds * 1000:g} ms, RQ SimpleWorker, managed Redis"
    )
    server.create_app(APP)
    server.deploy(APP, APP_DIR)
    server.cli("addons:create", "redis", "-a", APP)
    scale_and_wait(server, APP, "web", 1)

    scale_and_wait(server, APP, "worker", args.max)
    wait_until(lambda: stats(server)["workers"] == args.max, 60, "workers registered")
    fixed, fixed_first, final = drain(server, args.jobs, args.seconds)
    fixed_ok = intact(final, args.jobs)
    print(
        f"fixed worker={args.max}: drained in {fixed:5.2f} s, first job after "
        f"{fixed_first * 1000:4.0f} ms, ran {final['ran']}/{args.jobs}, "
        f"twice {final['ran_twice']}, failed {final['failed']}"
    )

    scale_and_wait(server, APP, "worker", 0)
    wait_until(lambda: stats(server)["workers"] == 0, 60, "workers gone")
    server.cli(
        *("ps:autoscale:enable", "worker", "--min", "0", "--max", str(args.max)),
        *("--queue", "rq:default", "--per-dyno", str(args.per_dyno)),
        *("--cooldown", str(args.cooldown), "-a", APP),
    )
    wait_until(lambda: "watching" in server.cli("ps:autoscale", "-a", APP).stdout, 30, "the watch")
    auto, first, final = drain(server, args.jobs, args.seconds)
    emptied = time.monotonic()
    auto_ok = intact(final, args.jobs)
    wait_until(lambda: dynos_up(server, APP, "worker") == 0, args.cooldown + 60, "worker=0")
    back_to_zero = time.monotonic() - emptied
    print(
        f"autoscaled 0..{args.max}:  drained in {auto:5.2f} s, first job after "
        f"{first * 1000:4.0f} ms, ran {final['ran']}/{args.jobs}, "
        f"twice {final['ran_twice']}, failed {final['failed']}"
    )
    print(f"back to worker=0 {back_to_zero:.1f} s after the queue emptied", end="")
    print(f" (cooldown {args.cooldown} s)")
    decisions = [
        line.split("app[autoscaler]: ", 1)[1]
        for line in server.cli(
            "logs", "-a", APP, "-n", "5000", "-d", "autoscaler"
        ).stdout.splitlines()
        if "app[autoscaler]: " in line
    ]
    print(f"decisions ({len(decisions)}):")
    for decision in decisions:
        print(f"  {decision}")
    ratio = auto / fixed
    print(
        f"\nfirst job {first:.2f} s (target <= {FIRST_JOB_TARGET} s): "
        f"{'met' if first <= FIRST_JOB_TARGET else 'MISSED'}"
    )
    print(
        f"drain {ratio:.2f}x fixed worker={args.max} (target <= {DRAIN_TARGET}x): "
        f"{'met' if ratio <= DRAIN_TARGET else 'MISSED'}"
    )
    print(f"every job once: {'yes' if fixed_ok and auto_ok else 'NO'}")
    met = first <= FIRST_JOB_TARGET and ratio <= DRAIN_TARGET and fixed_ok and auto_ok
    return met


if __name__ == "__main__":
    sys.exit(main())
