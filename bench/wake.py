"""Benchmark: what does waking an idle dyno add to the app's own boot time?

Anchor: the same web process started directly (no dynos), timed from spawn to its first HTTP
answer. Then through dynos: the app's lone 1X web dyno idles (idle_after=1), and a request
through the router is timed from send to answer: the wake. Overhead = wake - own boot.
Target: <= 100 ms.

    python bench/wake.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from bench_server import machine, private_server

from dynos.backends.isolation import isolation_available, runtime_python
from dynos.testing.harness import RunningServer, dyno_states, wait_for

WEB = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"hello\\n")

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def own_boot(app_dir: Path) -> float:
    """Seconds from spawning the web process to its first answer (connects polled every ms)."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port)}
    started = time.perf_counter()
    # The interpreter dynos run (the system's python3 when dynos run as other users).
    python = runtime_python(isolation_available())
    process = subprocess.Popen([python, "web.py"], cwd=app_dir, env=env)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.001)
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5).raise_for_status()
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait()


def wake(server: RunningServer) -> float:
    wait_for(lambda: dyno_states(server, "wake") == {"web.1": "idle"}, what="idle")
    with server.router("wake") as router:
        started = time.perf_counter()
        response = router.get("/")
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp, private_server() as server:
        app_dir = Path(tmp)
        (app_dir / "Procfile").write_text("web: python3 web.py\n")
        (app_dir / "web.py").write_text(WEB)
        server.create_app("wake")
        server.deploy("wake", app_dir)
        server.cli("settings:set", "idle_after=1", "-a", "wake")
        boots, wakes = [], []
        for _ in range(rounds):  # alternate, so both see the same machine load
            boots.append(own_boot(app_dir))
            wakes.append(wake(server))
    boot, woke = statistics.median(boots), statistics.median(wakes)
    print(f"own boot (direct): median {boot * 1000:.0f} ms over {rounds} rounds")
    print(f"wake via router:   median {woke * 1000:.0f} ms over {rounds} rounds")
    overhead = (woke - boot) * 1000
    verdict = "ok" if overhead <= 100 else "MISSED"
    print(f"  wake overhead = {overhead:.0f} ms (target <= 100 ms: {verdict})")


if __name__ == "__main__":
    main()
