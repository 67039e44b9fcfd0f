"""Where an unchanged rebuild's time goes, as the client sees it: bench/build.py's Django app,
deployed once, then again unchanged ``--rounds`` times on the same server.

    python bench/rebuild_steps.py [--rounds 5]

Each deploy's output lines are timed as they arrive (the API streams them), and each rebuild
is cut at its lines into: the upload to the first line (the HTTP client's set-up, the
upload and unpack, the deploy's checks); from there to the line announcing collectstatic
(the plan, the cache's environment renamed in, the slug handed to the app's user);
collectstatic up to its last line (the sandbox's start, Django's setup, the copy); from that
line to the build's end (the interpreter's own exit, the sandbox's end, the slug taken
back); and the rest (the slug's size, the release). The round waits for the build cache's
copy between deploys, as bench/build.py does. Prints each rebuild and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from build import REQUIREMENTS, wait_for_cache, write_app

from dynos.testing.harness import RunningServer, start_server, tarball

SEGMENTS = (
    "to the first line",
    "to collectstatic",
    "collectstatic's output",
    "its exit and the build's end",
    "size and release",
)


def timed_lines(server: RunningServer, body: bytes) -> tuple[float, list[tuple[float, str]]]:
    """The deploy's total time and each output line with its arrival time."""
    marks: list[tuple[float, str]] = []
    started = time.perf_counter()
    with server.api() as api:
        headers = {"Content-Type": "application/gzip"}
        with api.stream("POST", "/apps/bench/deploys", content=body, headers=headers) as reply:
            for raw in reply.iter_lines():
                line = json.loads(raw)
                if "error" in line:
                    raise SystemExit(f"the deploy failed: {line['error']}")
                text = line.get("output") or ("<release>" if "release" in line else "")
                marks.append((time.perf_counter() - started, text))
    return time.perf_counter() - started, marks


def segments(marks: list[tuple[float, str]]) -> list[float]:
    """The rebuild cut at its lines (SEGMENTS), in seconds."""

    def at(prefix: str) -> int:
        for index, (_, text) in enumerate(marks):
            if text.startswith(prefix):
                return index
        raise SystemExit(f"no line starting {prefix!r} in:\n" + "\n".join(t for _, t in marks))

    begin = at("-----> $ python manage.py collectstatic")
    end = at("-----> Saving cache")
    if "-----> Installing" in "".join(text for _, text in marks):
        raise SystemExit("the unchanged rebuild installed something")
    times = [0.0, marks[0][0], marks[begin][0], marks[end - 1][0], marks[end][0], marks[-1][0]]
    return [b - a for a, b in itertools.pairwise(times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    python = shutil.which("python3.11", path="/usr/bin") or sys.executable
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"Python {version} for the app; {args.rounds} unchanged rebuilds", flush=True)
    with tempfile.TemporaryDirectory(prefix="dynos-bench-rebuild-") as temp:
        root = Path(temp)
        os.chmod(root, 0o755)  # a root server's dynos must reach the home inside
        body = tarball(write_app(root, REQUIREMENTS, version))
        server = start_server(root / "home", "--stop-grace", "2")
        rows: list[list[float]] = []
        try:
            with server.api() as api:
                api.post("/apps", json={"name": "bench"}).raise_for_status()
            timed_lines(server, body)  # the first build
            for _ in range(args.rounds):
                wait_for_cache(server)
                total, marks = timed_lines(server, body)
                rows.append([total, *segments(marks)])
                print("  " + "  ".join(f"{v * 1000:6.0f}" for v in rows[-1]) + " ms", flush=True)
        finally:
            server.stop()
    print("medians (ms):")
    for index, name in enumerate(("total", *SEGMENTS)):
        print(f"  {name:30} {statistics.median(r[index] for r in rows) * 1000:6.0f}")


if __name__ == "__main__":
    main()
