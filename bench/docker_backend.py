"""What the docker (or swarm) backend adds per request through the router, against the local
backend.

    python bench/docker_backend.py [--rounds 3] [--duration 5] [--connections 64]
                                   [--backend docker|swarm] [--registry 127.0.0.1:5000]

``--backend swarm`` runs the second server on a swarm (``scripts/swarm-lab up``): its two web
dynos are tasks spread over the nodes, one on the lab's second engine, whose requests cross
the veth pair to its network namespace and the node's ``docker_gwbridge``.

Two real ``dynos server`` processes side by side, one with ``--backend local`` (the anchor)
and one with ``--backend docker`` (needs the engine and ``dynos stack:build``), each with
``bench/router_app`` (uvicorn, uvloop, httptools, a 13-byte answer) deployed and scaled to two
web dynos. The app binds ``0.0.0.0`` on both (a container must; the same app for both). wrk
(``-t2 -c64``, 5 s) runs against each router in turn, the order alternating per round; the
medians over the rounds are compared: the ratio of requests per second, and p50/p99.

On the docker backend a request goes router -> 127.0.0.1:<port> (the engine's published
port: docker-proxy, a userland relay, or iptables' DNAT without it) -> the container; on the
local backend router -> the dyno. The router keeps its connections to the dynos alive, so
the relay costs a copy of each byte, not a connection per request.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench_server import machine, private_server

from dynos.testing.harness import RunningServer, wait_for_dynos
from router import APP, APP_DIR, Result, Target, run_wrk, system_python_version


def app_tarball() -> bytes:
    """bench/router_app, bound to every address, pinned to the system's Python (the local
    backend's build would otherwise pick the newest on the host; the stack's is the same
    Debian 3.11)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(APP_DIR.iterdir()):
            data = path.read_bytes()
            if path.name == "Procfile":
                data = data.replace(b"--host 127.0.0.1", b"--host 0.0.0.0")
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        pinned = f"{system_python_version()}\n".encode()
        info = tarfile.TarInfo(".python-version")
        info.size = len(pinned)
        archive.addfile(info, io.BytesIO(pinned))
    return buffer.getvalue()


def deploy(server: RunningServer) -> float:
    """Deploy the app with two web dynos; the seconds from the deploy to both up."""
    started = time.monotonic()
    server.create_app(APP)
    with server.api() as api:
        response = api.post(
            f"/apps/{APP}/deploys",
            content=app_tarball(),
            headers={"Content-Type": "application/gzip"},
            timeout=600,
        )
        response.raise_for_status()
        assert '"release"' in response.text.splitlines()[-1], response.text[-2000:]
    server.scale(APP, web=2)
    wait_for_dynos(server, APP, {"web.1": "up", "web.2": "up"}, 180)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=("docker", "swarm"), default="docker")
    parser.add_argument("--registry", default="127.0.0.1:5000", help="swarm: the nodes' registry")
    args = parser.parse_args()
    other = args.backend
    extra = ("--registry", args.registry, "--stop-grace", "2") if other == "swarm" else ()
    results: dict[str, list[Result]] = {"local": [], other: []}
    with private_server() as local, private_server("--backend", other, *extra) as container:
        servers = {"local": local, other: container}
        for name, server in servers.items():
            print(f"{name}: deployed and two web dynos up in {deploy(server):.1f} s", flush=True)
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                target = Target([servers[name].router_port])
                result = run_wrk(target, args.threads, args.connections, args.duration)
                results[name].append(result)
                print(
                    f"round {round_ + 1} {name:6} {result.rps:9.0f} req/s  p50 "
                    f"{result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  errors {result.errors}",
                    flush=True,
                )
    print(f"\n{machine()}")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds")
    median = {name: statistics.median(r.rps for r in rs) for name, rs in results.items()}
    for name, rs in results.items():
        print(
            f"{name:6} median {median[name]:9.0f} req/s  p50 "
            f"{statistics.median(r.p50_ms for r in rs):.2f} ms  p99 "
            f"{statistics.median(r.p99_ms for r in rs):.2f} ms  errors "
            f"{sum(r.errors for r in rs)}"
        )
    print(f"{other} / local: {median[other] / median['local']:.3f} of the throughput")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("no Docker engine answers: start dockerd")
    main()
