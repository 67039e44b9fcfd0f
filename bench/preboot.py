"""Benchmark: requests failed (and slowed) by a release of a serving app, with and without
preboot.

    python bench/preboot.py [--rounds 3] [--rate 100] [--web 2] [--boot-delay 1]

One server, two apps of the same code (tests/integration/apps/preboot: a startup check on
GET /health, a web process that takes ``--boot-delay`` seconds to boot), each with
``--web`` web dynos. A client sends ``GET /`` through the router at ``--rate`` requests a
second, on one keep-alive connection, while a config change makes a new release; the
round ends 1 s after every web dyno runs the new release. The anchor is the app without
preboot (the rolling replacement: one web dyno at a time, drained, then started again);
the other has ``features:enable preboot``. Rounds alternate between the two apps. Prints,
per app, the requests sent and failed (by kind), p50, p99 and the slowest answer.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench_server import machine, private_server, wait_until

from dynos.testing.harness import RunningServer
from dynos.testing.load import LoadResult, SteadyLoad

APP_DIR = Path(__file__).resolve().parents[1] / "tests" / "integration" / "apps" / "preboot"


def release_versions(server: RunningServer, app: str) -> dict[str, tuple[str, int]]:
    with server.api() as api:
        found = api.get(f"/apps/{app}/dynos").json()
    return {d["name"]: (d["state"], d["release"]["version"]) for d in found}


def current_version(server: RunningServer, app: str) -> int:
    with server.api() as api:
        return int(api.get(f"/apps/{app}/releases").json()[-1]["version"])


def one_round(server: RunningServer, app: str, web: int, rate: float, mark: int) -> LoadResult:
    load = SteadyLoad(server.router_port, app, rate=rate).start()
    time.sleep(1)
    with server.api() as api:
        api.patch(f"/apps/{app}/config-vars", json={"VERSION": str(mark)}).raise_for_status()
    version = current_version(server, app)
    want = {f"web.{n}": ("up", version) for n in range(1, web + 1)}
    wait_until(lambda: release_versions(server, app) == want, 120, f"{app} on v{version}")
    time.sleep(1)
    return load.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--web", type=int, default=2)
    parser.add_argument("--boot-delay", type=float, default=1.0)
    args = parser.parse_args()
    apps = {"rolling": "bench-rolling", "preboot": "bench-preboot"}
    results: dict[str, list[LoadResult]] = {mode: [] for mode in apps}
    with private_server("--stop-grace", "5", "--boot-timeout", "30") as server:
        for mode, app in apps.items():
            server.create_app(app)
            with server.api() as api:
                config = {"BOOT_DELAY": str(args.boot_delay)}
                api.patch(f"/apps/{app}/config-vars", json=config).raise_for_status()
            server.deploy(app, APP_DIR)
            server.scale(app, web=args.web)
            if mode == "preboot":
                server.cli("features:enable", "preboot", "-a", app)
            version = current_version(server, app)
            want = {f"web.{n}": ("up", version) for n in range(1, args.web + 1)}
            wait_until(lambda a=app, w=want: release_versions(server, a) == w, 120, "up")
        for n in range(args.rounds):
            for mode, app in apps.items() if n % 2 == 0 else reversed(apps.items()):
                results[mode].append(one_round(server, app, args.web, args.rate, n + 2))
    print(machine())
    print(
        f"{args.web} web dynos, {args.rate:g} req/s, boot {args.boot_delay:g} s, "
        f"{args.rounds} rounds"
    )
    print("| mode | sent | failed | failures | p50 | p99 | slowest |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode, rounds in results.items():
        sent = sum(r.sent for r in rounds)
        failed = sum(r.failed for r in rounds)
        kinds: dict[str, int] = {}
        for r in rounds:
            for kind, count in r.failures.items():
                kinds[kind] = kinds.get(kind, 0) + count
        p50 = statistics.median(r.percentile(50) for r in rounds) * 1000
        p99 = max(r.percentile(99) for r in rounds) * 1000
        slowest = max(r.slowest for r in rounds) * 1000
        shown = ", ".join(f"{k}: {v}" for k, v in kinds.items()) or "-"
        print(
            f"| {mode} | {sent} | {failed} | {shown} | {p50:.1f} ms | {p99:.0f} ms "
            f"| {slowest:.0f} ms |"
        )


if __name__ == "__main__":
    main()
