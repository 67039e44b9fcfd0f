"""Worker scaling: does adding worker dynos drain a job backlog faster, with a real queue?

    python bench/worker_scaling.py [--jobs 200] [--seconds 0.1]

A private dynos server runs ``examples/queue`` (RQ on a managed Redis add-on: ``addons:create
redis``). For worker=1, 2 and 4, with the workers up and registered, the web process enqueues
``--jobs`` jobs of ``--seconds`` each; the clock runs until every job has run. Each job counts
its runs in Redis, so a job lost or run twice shows. Target: worker=4 drains >= 3.5x faster
than worker=1, with no job lost or run twice. Needs redis-server and PyPI (the app's build
installs rq and redis).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench_server import machine, private_server, scale_and_wait, wait_until

from dynos.testing.harness import RunningServer

APP = "queue"
APP_DIR = Path(__file__).resolve().parents[1] / "examples" / "queue"
SCALES = (1, 2, 4)
TARGET = 3.5  # worker=4 against worker=1


def stats(server: RunningServer) -> dict[str, Any]:
    with server.router(APP) as web:
        response = web.get("/stats")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def drain(server: RunningServer, jobs: int, seconds: float) -> tuple[float, dict[str, Any]]:
    """Enqueue ``jobs`` jobs and time them until all have run; returns (seconds, stats)."""
    with server.router(APP) as web:
        web.post("/reset").raise_for_status()
        started = time.monotonic()
        web.post("/jobs", params={"count": jobs, "seconds": seconds}).raise_for_status()
        while True:
            now = stats(server)
            if now["ran"] >= jobs and now["queued"] == 0:
                return time.monotonic() - started, now
            if time.monotonic() - started > jobs * seconds * 3 + 60:
                raise SystemExit(f"the backlog did not drain: {now}")
            time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.1)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.jobs} jobs of {args.seconds * 1000:g} ms, RQ SimpleWorker, managed Redis\n")
    times: dict[int, float] = {}
    intact = True
    with private_server() as server:
        server.create_app(APP)
        server.deploy(APP, APP_DIR)
        server.cli("addons:create", "redis", "-a", APP)
        scale_and_wait(server, APP, "web", 1)
        for workers in SCALES:
            scale_and_wait(server, APP, "worker", workers)
            wait_until(lambda: stats(server)["workers"] == workers, 60, "workers registered")  # noqa: B023
            elapsed, final = drain(server, args.jobs, args.seconds)
            times[workers] = elapsed
            ideal = args.jobs * args.seconds / workers
            good = final["ran"] == args.jobs and final["ran_twice"] == 0 and final["failed"] == 0
            intact = intact and good
            print(
                f"worker={workers}: drained in {elapsed:5.2f} s  ({times[1] / elapsed:.2f}x "
                f"worker=1; ideal {ideal:.1f} s)  ran {final['ran']}/{args.jobs}, "
                f"twice {final['ran_twice']}, failed {final['failed']}"
            )
    met = intact and times[1] / times[4] >= TARGET
    print(f"\ntarget (worker=4 >= {TARGET}x, none lost or run twice): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
