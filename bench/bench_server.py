"""A private `dynos server` for a scaling benchmark, and the facts that go with its figures.

``private_server()`` starts ``python -m dynos server`` (a subprocess, a temporary home, port-0
sockets) through :mod:`dynos.testing.harness` and stops it afterwards, whatever happened.
``machine()`` names what the figures were measured on.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from dynos.testing.harness import RunningServer, start_server


@contextmanager
def private_server(*extra: str) -> Iterator[RunningServer]:
    """A fresh server in a temporary home, stopped (every dyno with it) on the way out."""
    with tempfile.TemporaryDirectory(prefix="dynos-bench-") as temp:
        server = start_server(Path(temp) / "home", *extra)
        try:
            yield server
        finally:
            if server.process.poll() is None:
                try:
                    server.stop()
                except subprocess.TimeoutExpired:
                    server.process.kill()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.02)


def dynos_up(server: RunningServer, app: str, type_: str) -> int:
    """How many of the app's dynos of ``type_`` are up."""
    with server.api() as api:
        dynos = api.get(f"/apps/{app}/dynos").json()
    return sum(1 for d in dynos if d["type"] == type_ and d["state"] == "up")


def scale_and_wait(server: RunningServer, app: str, type_: str, quantity: int) -> None:
    """Scale ``type_`` to ``quantity`` and wait until exactly that many of its dynos are up."""
    server.scale(app, **{type_: quantity})
    wait_until(lambda: dynos_up(server, app, type_) == quantity, 120, f"{type_}={quantity} up")


def machine() -> str:
    """CPU, memory, kernel and the versions that matter, on one line."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [
        f"{os.cpu_count()} CPUs ({cpu})",
        f"{memory:.0f} GiB",
        f"Linux {platform.release()}",
        f"Python {platform.python_version()}",
        f"dynos {version('dynos')}",
    ]
    redis = shutil.which("redis-server")
    if redis:
        said = subprocess.run([redis, "--version"], capture_output=True, text=True).stdout
        found = said.split(" v=")[1].split()[0] if " v=" in said else "?"
        parts.append(f"redis-server {found}")
    return ", ".join(parts)
