"""Benchmark: are dyno sizes real? CPU share of 2X vs 1X dynos, and how fast a hog dies (R15).

Runs a real `dynos server` (as root it enforces sizes with cgroups, otherwise by polling):
  1. four CPU-bound dynos on this machine's cores: two 1X and two 2X. Each prints the CPU time
     it got; over a 10 s window the 2X dynos should get >= 1.8x the CPU time of the 1X ones.
  2. a 1X dyno that allocates memory steadily past twice its 512 MB quota: the time from
     crossing 1024 MB to the platform seeing it killed should be < 2 s.

    python bench/sizes.py
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_server import machine, private_server

from dynos.backends.cgroups import Cgroups
from dynos.testing.harness import RunningServer, dyno_states, wait_for

BURN = """
import time
next_report = 0.0
while True:
    for _ in range(100_000):
        pass
    now = time.monotonic()
    if now >= next_report:
        print(f"cpu {time.process_time():.3f} at {time.time():.3f}", flush=True)
        next_report = now + 0.5
"""

HOG = """
import time
held = []
while True:
    size = (len(held) + 1) * 10
    print(f"allocating to {size} MB at {time.time():.6f}", flush=True)
    held.append(b"x" * (10 * 1024 * 1024))
    time.sleep(0.002)
"""

WINDOW = 10.0


def write_app(directory: Path) -> None:
    (directory / "Procfile").write_text(
        "one: python3 burn.py\ntwo: python3 burn.py\nhog: python3 hog.py\n"
    )
    (directory / "burn.py").write_text(BURN)
    (directory / "hog.py").write_text(HOG)


def cpu_samples(server: RunningServer, dyno: str) -> list[tuple[float, float]]:
    """(wall time, cpu time) pairs the dyno printed."""
    text = server.cli("logs", "-a", "sizes", "-d", dyno, "-s", "app", "-n", "1500").stdout
    return [(float(w), float(c)) for c, w in re.findall(r"cpu ([\d.]+) at ([\d.]+)", text)]


def cpu_in_window(samples: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [cpu for wall, cpu in samples if start <= wall <= end]
    return inside[-1] - inside[0] if len(inside) >= 2 else 0.0


def cpu_share(server: RunningServer) -> tuple[float, float]:
    with server.api() as api:
        updates = [
            {"type": "one", "quantity": 2, "size": "1X"},
            {"type": "two", "quantity": 2, "size": "2X"},
        ]
        api.patch("/apps/sizes/formation", json={"updates": updates}).raise_for_status()
    names = {"one.1", "one.2", "two.1", "two.2"}
    wait_for(lambda: set(dyno_states(server, "sizes")) == names)
    time.sleep(2)  # let the scheduler settle
    start = time.time()
    time.sleep(WINDOW)
    end = time.time()
    got = {name: cpu_in_window(cpu_samples(server, name), start, end) for name in names}
    server.scale("sizes", one=0, two=0)
    one = statistics.mean([got["one.1"], got["one.2"]])
    two = statistics.mean([got["two.1"], got["two.2"]])
    return one, two


def hog_kill_time(server: RunningServer) -> tuple[float, int, int]:
    """Seconds from the hog's last allocation (the one that crossed twice its quota) to the
    platform seeing it dead; the exit status; the size it reached."""
    server.scale("sizes", one=0, two=0, hog=1)
    wait_for(lambda: "dynos[hog.1]: Process exited" in server.logs("sizes"), timeout=60)
    server.scale("sizes", hog=0)
    text = server.logs("sizes")
    exited = re.search(r"^(\S+) dynos\[hog\.1\]: Process exited with status (\d+)", text, re.M)
    assert exited, text[-2000:]
    before_exit = text[: exited.start()]
    allocations = re.findall(r"allocating to (\d+) MB at ([\d.]+)", before_exit)
    mb, at = allocations[-1]
    died_at = datetime.fromisoformat(exited.group(1)).timestamp()
    return died_at - float(at), int(exited.group(2)), int(mb)


def main() -> None:
    cgroups = Cgroups.detect()
    mode = cgroups.description if cgroups else "process polling (psutil) and nice"
    print(f"machine: {machine()}")
    print(f"enforcement: {mode}")
    with tempfile.TemporaryDirectory() as tmp, private_server() as server:
        app_dir = Path(tmp)
        write_app(app_dir)
        server.create_app("sizes")
        server.deploy("sizes", app_dir)
        one, two = cpu_share(server)
        ratio = two / one if one else float("inf")
        print(f"CPU time in {WINDOW:.0f} s: 1X {one:.2f} s, 2X {two:.2f} s per dyno")
        verdict = "ok" if ratio >= 1.8 else "MISSED"
        print(f"  ratio 2X/1X = {ratio:.2f} (target >= 1.8: {verdict})")
        seconds, status, reached = hog_kill_time(server)
        verdict = "ok" if seconds < 2 else "MISSED"
        print(
            f"memory hog: killed {seconds * 1000:.0f} ms after the allocation that crossed "
            f"2x its quota (reached {reached} MB, exit status {status})"
        )
        print(f"  target < 2000 ms: {verdict}")


if __name__ == "__main__":
    main()
