"""Scale latency: how long from ``ps:scale web=1`` -> ``web=10`` until all ten serve, and back.

    python bench/scale_latency.py [--rounds 3]

A private dynos server runs each app in turn: ``bench/apps/quick_web`` (app ``quick-web``, a
socket server that boots in about 20 ms of CPU, so the figure shows what the platform adds)
and ``examples/hello`` (``http.server``, about 60-70 ms of CPU to boot). Each round scales
web=1 -> web=10 and times, from the API request, until all ten dynos are up (the manager puts
a web dyno in the router's rotation in the same step that marks it up; the bench then checks
through the router that all ten answer); then web=10 -> web=1 until the nine are stopped and
gone. The app's own boot time (``python3 web.py`` until its port accepts, alone, outside
dynos) is measured alongside, and so is the same step without dynos: nine copies of the app
started by hand at once, which on a machine with few cores is what bounds the scale-up (the
nine boots share the CPU).
Target: each within 200 ms of the app's own boot time.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_server import machine, private_server, scale_and_wait

from dynos.backends.isolation import isolation_available, runtime_python
from dynos.testing.harness import RunningServer

ROOT = Path(__file__).resolve().parents[1]
APPS = {"quick-web": ROOT / "bench" / "apps" / "quick_web", "hello": ROOT / "examples" / "hello"}
MANY = 10
TARGET = 0.2  # seconds over the app's own boot time


def boot_time(python: str, app_dir: Path, copies: int = 1) -> float:
    """Seconds from spawning ``copies`` of the app's web process at once (outside dynos) to
    all their ports accepting."""
    ports = []
    for _ in range(copies):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    processes = []
    started = time.monotonic()
    try:
        for port in ports:
            env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "DYNO": "web", "LANG": "C.UTF-8"}
            processes.append(
                subprocess.Popen(
                    [python, "web.py"], cwd=app_dir, env=env, stdout=subprocess.DEVNULL
                )
            )
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.001)
        return time.monotonic() - started
    finally:
        for process in processes:
            process.kill()
            process.wait()


def timed_scale(server: RunningServer, app: str, quantity: int, done: object) -> float:
    """Seconds from the scale request until ``done(dynos)`` holds (polled every 5 ms)."""
    assert callable(done)
    with server.api() as api:
        started = time.monotonic()
        updates = [{"type": "web", "quantity": quantity}]
        api.patch(f"/apps/{app}/formation", json={"updates": updates}).raise_for_status()
        while True:
            dynos = [d for d in api.get(f"/apps/{app}/dynos").json() if d["type"] == "web"]
            if done(dynos):
                return time.monotonic() - started
            if time.monotonic() - started > 60:
                raise SystemExit(f"scaling to web={quantity} did not finish: {dynos}")
            time.sleep(0.005)


def all_answer(server: RunningServer, app: str) -> bool:
    """Whether all ten dynos answer through the router (each names itself)."""
    seen: set[str] = set()
    with server.router(app) as router:
        for _ in range(MANY * 10):
            seen.add(router.get("/").text.strip())
            if len(seen) == MANY:
                return True
    return False


def measure(server: RunningServer, app: str, python: str, rounds: int) -> bool:
    """Runs the rounds for one app, prints them and the medians; whether the targets hold."""
    app_dir = APPS[app]
    boot = statistics.median(boot_time(python, app_dir) for _ in range(5))
    print(f"app {app} ({python} web.py): its own boot time {boot * 1000:.0f} ms")
    ups: list[float] = []
    downs: list[float] = []
    by_hand: list[float] = []
    server.create_app(app)
    server.deploy(app, app_dir)
    scale_and_wait(server, app, "web", 1)
    for number in range(1, rounds + 1):
        # The same step without dynos, in the same phase of the machine: nine copies of the
        # app started by hand at once (on few cores their boots share the CPU).
        by_hand.append(boot_time(python, app_dir, MANY - 1))
        up = timed_scale(
            server,
            app,
            MANY,
            lambda dynos: len(dynos) == MANY and all(d["state"] == "up" for d in dynos),
        )
        if not all_answer(server, app):
            raise SystemExit("the ten dynos are up but not all of them answer")
        down = timed_scale(server, app, 1, lambda dynos: [d["name"] for d in dynos] == ["web.1"])
        ups.append(up)
        downs.append(down)
        print(
            f"  round {number}: nine copies by hand {by_hand[-1] * 1000:4.0f} ms | "
            f"web=1 -> web={MANY} up and routed {up * 1000:4.0f} ms | "
            f"web={MANY} -> web=1 nine stopped {down * 1000:4.0f} ms"
        )
    server.scale(app, web=0)
    up, down, hand = (statistics.median(v) for v in (ups, downs, by_hand))
    print(
        f"  medians: scale up {up * 1000:.0f} ms = boot {(up - boot) * 1000:+.0f} ms, "
        f"= nine copies by hand {(up - hand) * 1000:+.0f} ms; "
        f"scale down {down * 1000:.0f} ms = boot {(down - boot) * 1000:+.0f} ms"
    )
    checks = {
        "scale down within 200 ms of the boot time": down - boot <= TARGET,
        "scale up within 200 ms of the boot time": up - boot <= TARGET,
        "scale up within 200 ms of nine boots by hand": up - hand <= TARGET,
    }
    for what, ok in checks.items():
        print(f"  target: {what}: {'met' if ok else 'MISSED'}")
    print()
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--app", choices=sorted(APPS), action="append", help="default: both")
    args = parser.parse_args()
    python = runtime_python(isolation_available())  # the python3 dynos run with
    print(f"machine: {machine()}\n")
    met = {}
    with private_server() as server:
        for app in args.app or list(APPS):
            met[app] = measure(server, app, python, args.rounds)
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    sys.exit(main())
