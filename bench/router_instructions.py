"""The router's instructions per request, counted (valgrind), with and without the metrics.

    python bench/router_instructions.py ANCHOR_CHECKOUT [--requests 1000 4000]

On a machine shared with other work, req/s and CPU time per request move by 20% from one
run to the next (bench/router_metrics.py shows it); instructions executed do not. For each
checkout (the anchor, a source tree from before the metrics with its router compiled in place,
and this one) it runs the router alone in a process under ``valgrind --tool=callgrind``: a
``Router`` with its routing table, request log and metrics as the server has them, in front of
one upstream (a process of its own answering a fixed 200), and sends it N requests over 8
keep-alive connections, for two values of N. The difference of the two counts divided by the
difference of N is the router's instructions per request, start-up and imports cancelled
out. Prints both and their ratio. Needs valgrind (Debian: ``apt-get install -y valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from http.client import HTTPConnection
from pathlib import Path

HERE = Path(__file__).resolve()
THIS_SRC = HERE.parents[1] / "src"
CONNECTIONS = 8


# ---- the router process (under valgrind) ---------------------------------------------------


async def serve_router(upstream_port: int) -> None:
    from dynos.logs.hub import LogHub
    from dynos.router.proxy import Router
    from dynos.router.route import DynoEndpoint
    from dynos.router.routing_table import RoutingTable

    table = RoutingTable("localhost")
    table.set_app("bench", [DynoEndpoint("web.1", "127.0.0.1", upstream_port)])
    router = Router(table, LogHub())
    port = await router.start("127.0.0.1", 0)
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), done.set)  # stdin closes: the client is done
    await done.wait()
    router.flush_logs()
    await router.close()


# ---- the upstream (a process of its own) ---------------------------------------------------


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def serve_upstream() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# ---- the orchestration ---------------------------------------------------------------------


def send(port: int, requests: int) -> None:
    def one_connection(count: int) -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": "bench.localhost"})
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"ok"
        conn.close()

    threads = [
        threading.Thread(target=one_connection, args=(requests // CONNECTIONS,))
        for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def count(src: Path, upstream_port: int, requests: int, out: Path) -> int:
    """Instructions the router process executed for ``requests`` requests (and its start)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    command = [
        *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
        *(sys.executable, str(HERE), "--router", str(upstream_port)),
    ]
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdin is not None
    port = int(process.stdout.readline())
    send(port, requests)
    process.stdin.close()
    process.stdin = None  # closed: communicate must not flush it
    _, stderr = process.communicate(timeout=600)
    found = re.search(rb"Collected : (\d+)", stderr)
    if found is None:
        raise SystemExit(stderr.decode(errors="replace")[-2000:])
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("anchor", type=Path, nargs="?")
    parser.add_argument("--requests", type=int, nargs=2, default=[1000, 4000])
    parser.add_argument("--router", type=int, help=argparse.SUPPRESS)  # the router process
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.router:
        asyncio.run(serve_router(args.router))
        return
    if args.upstream:
        asyncio.run(serve_upstream())
        return
    if args.anchor is None or not (args.anchor / "src" / "dynos").is_dir():
        raise SystemExit("give a dynos checkout without the metrics (with src/dynos)")
    upstream = subprocess.Popen(
        [sys.executable, str(HERE), "--upstream"], stdout=subprocess.PIPE, text=True
    )
    assert upstream.stdout is not None
    upstream_port = int(upstream.stdout.readline())
    low, high = args.requests
    per_request: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, src in (("anchor", args.anchor.resolve() / "src"), ("metrics", THIS_SRC)):
                counts = [
                    count(src, upstream_port, n, Path(tmp) / f"{name}{n}") for n in (low, high)
                ]
                per_request[name] = (counts[1] - counts[0]) / (high - low)
                print(
                    f"{name:<8} {counts[0]:,} instructions for {low} requests, {counts[1]:,} "
                    f"for {high}: {per_request[name]:,.0f} per request",
                    flush=True,
                )
    finally:
        upstream.kill()
    ratio = per_request["metrics"] / per_request["anchor"]
    print(f"metrics/anchor: {ratio:.4f} instructions per request ({(ratio - 1) * 100:+.2f}%)")


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
