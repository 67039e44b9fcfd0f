"""What a ``git push`` deploy costs over ``dynos deploy`` of the same tree.

    python bench/git_push.py [--rounds 5]

One dynos server on a fresh home, one Python app (a ``requirements.txt`` with gunicorn
pinned, a Procfile, a WSGI module), deployed once to fill its build cache. Then each round
changes one file, commits it, and deploys that same tree twice, timed as the user sees it:

- the anchor, ``dynos deploy`` (the CLI: packs the directory, uploads it, streams the build
  and the release);
- ``git push dynos main`` to the remote ``dynos git:remote`` made (through the router's
  Host ``git.<domain>``; git asks ``dynos git:credentials`` for the token after the first
  401, as it does on every push).

Both build with the dependency set unchanged (uv's check, nothing installed) and release.
The build cache's background copy is waited for between deploys (as the time between a
developer's deploys does), so neither pays for the other's. Which goes first alternates
round by round. Prints each round, the medians, and the push's overhead (target: at most
1 s over ``dynos deploy``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from dynos.testing.harness import RunningServer, start_server

FILES = {
    "Procfile": "web: gunicorn app:application --bind 0.0.0.0:$PORT\n",
    "requirements.txt": "gunicorn==23.0.0\n",
    "app.py": """
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [open("version.txt", "rb").read()]
    """,
    "version.txt": "0\n",
}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def wait_for_cache(server: RunningServer, after: float) -> None:
    """Until the build cache's copy of the environment is newer than ``after``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        keys = list((server.home / "build-cache").glob("*/key.json"))
        if keys and max(k.stat().st_mtime for k in keys) > after:
            return
        time.sleep(0.05)
    raise SystemExit("the build cache was never saved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dynos-bench-git-") as temp:
        root = Path(temp)
        os.chmod(root, 0o755)  # a root server's dynos must reach the home inside
        server = start_server(root / "home", "--stop-grace", "2")
        try:
            rounds = bench(server, root, args.rounds)
        finally:
            server.stop()
    deploys = [r["dynos deploy"] for r in rounds]
    pushes = [r["git push"] for r in rounds]
    overheads = [r["git push"] - r["dynos deploy"] for r in rounds]
    print("medians:")
    print(f"  dynos deploy (anchor)   {statistics.median(deploys):6.2f} s")
    print(f"  git push                {statistics.median(pushes):6.2f} s")
    print(f"  push - deploy           {statistics.median(overheads):+6.2f} s (target: <= +1 s)")


def bench(server: RunningServer, root: Path, rounds: int) -> list[dict[str, float]]:
    work = root / "work"
    work.mkdir()
    for name, text in FILES.items():
        (work / name).write_text(textwrap.dedent(text).lstrip())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DYNOS_"))}
    env.update(
        DYNOS_HOME=str(server.home),
        HOME=str(root),
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        GIT_TERMINAL_PROMPT="0",
    )
    dynos = [sys.executable, "-m", "dynos"]
    run([*dynos, "apps:create", "bench"], work, env)
    run(["git", "init", "-q", "-b", "main"], work, env)
    run([*dynos, "git:remote", "-a", "bench"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "first"], work, env)
    # The first build (downloads gunicorn) fills the build cache; not timed.
    started = time.time()
    output = run(["git", "push", "dynos", "main"], work, env)
    if "Released" not in output:
        raise SystemExit(f"the first push did not release:\n{output}")
    wait_for_cache(server, started)
    results = []
    for number in range(rounds):
        (work / "version.txt").write_text(f"{number + 1}\n")
        run(["git", "commit", "-qam", f"round {number + 1}"], work, env)
        times: dict[str, float] = {}
        order = ["dynos deploy", "git push"] if number % 2 == 0 else ["git push", "dynos deploy"]
        for way in order:
            command = (
                [*dynos, "deploy", "-a", "bench", str(work)]
                if way == "dynos deploy"
                else ["git", "push", "dynos", "main"]
            )
            started = time.time()
            clock = time.perf_counter()
            output = run(command, work, env)
            times[way] = time.perf_counter() - clock
            if "Released" not in output or "Installed" in output:
                raise SystemExit(f"{way} did not release from the cache:\n{output}")
            wait_for_cache(server, started)
        results.append(times)
        print(
            f"  round {number + 1}: dynos deploy {times['dynos deploy']:.2f} s, "
            f"git push {times['git push']:.2f} s",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
