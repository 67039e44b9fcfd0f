"""Web scaling: does adding web dynos add throughput, as it should for a one-at-a-time app?

    python bench/web_scaling.py [--clients 16] [--duration 8] [--rounds 1]

A private dynos server runs ``bench/apps/serial_web`` (each web dyno serves one request at a
time and spends 50 ms on it, so one dyno tops out at 20 requests/s). 16 clients send requests
through the router back to back, with keep-alive, for ``--duration`` seconds at web=1, 2 and
4 (after a 1 s warm-up each). Targets: web=2 >= 1.9x and web=4 >= 3.6x the throughput of
web=1, and no failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
from bench_server import machine, private_server, scale_and_wait

APP = "serial"
APP_DIR = Path(__file__).resolve().parent / "apps" / "serial_web"
SCALES = (1, 2, 4)
TARGETS = {2: 1.9, 4: 3.6}


async def load(port: int, clients: int, duration: float) -> tuple[int, int, list[float], float]:
    """``clients`` loops of requests started during ``duration`` seconds: (ok, failed,
    latencies, seconds until the last answer came)."""
    ok = failed = 0
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Host": f"{APP}.localhost"},
        limits=limits,
        timeout=60,
    ) as client:
        began = time.monotonic()
        deadline = began + duration

        async def one_client() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = await client.get("/")
                except httpx.HTTPError:
                    failed += 1
                    continue
                if response.status_code == 200:
                    ok += 1
                    latencies.append(time.monotonic() - started)
                else:
                    failed += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.monotonic() - began
    return ok, failed, latencies, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.clients} clients through the router, {args.duration:g} s per step\n")
    results: dict[int, float] = {}
    failures = 0
    with private_server() as server:
        server.create_app(APP)
        server.deploy(APP, APP_DIR)
        for web in SCALES:
            scale_and_wait(server, APP, "web", web)
            asyncio.run(load(server.router_port, args.clients, 1.0))  # warm-up
            ok, failed, latencies, elapsed = asyncio.run(
                load(server.router_port, args.clients, args.duration)
            )
            rps = ok / elapsed
            results[web] = rps
            failures += failed
            p50 = statistics.median(latencies) * 1000
            p99 = statistics.quantiles(latencies, n=100)[98] * 1000
            ratio = rps / results[1]
            print(
                f"web={web}: {rps:6.1f} req/s  ({ratio:.2f}x web=1)  "
                f"p50 {p50:5.0f} ms  p99 {p99:5.0f} ms  failed {failed}"
            )
    met = failures == 0 and all(results[w] / results[1] >= t for w, t in TARGETS.items())
    wanted = ", ".join(f"web={w} >= {t}x" for w, t in TARGETS.items())
    print(f"\ntargets ({wanted}, 0 failed): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
