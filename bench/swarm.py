"""`ps:scale web=1 -> web=8` on the swarm backend, against one container's own start.

    python bench/swarm.py [--rounds 3] [--deploy] [--kill-node]

Needs `scripts/swarm-lab up` (a 2-node swarm on this machine, its registry on
127.0.0.1:5000). A real ``dynos server --backend swarm`` deploys tests/integration/apps/swarm
(a stdlib HTTP server: no build), runs web=1, then per round scales to 8 and times until the
router has answered from all eight (web.1 .. web.8, spread over both nodes), then back to 1.
The anchor, side by side in the same run: the same release image started as one container
with ``docker run -d`` on the manager's engine, timed until it answers on its port.

``--deploy``: then, at web=2 and GETs one after another through the router, a config change
(a new release, rolled out by Swarm): the failed GETs until both dynos serve it.
``--kill-node``: then, at web=2 over both nodes and GETs one after another through the
router, ``kill -9`` of the second node's dockerd: the failed GETs, the seconds until the
dead node's dyno is out of the router, and until both dynos are up again (on the manager);
the lab's worker is started again after (``scripts/swarm-lab up``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench_server import machine, private_server

from dynos.testing.harness import RunningServer, wait_for_dynos

APP = "spread"
SWARM_APP = Path(__file__).resolve().parents[1] / "tests" / "integration" / "apps" / "swarm"


def routed_all(server: RunningServer, count: int, timeout: float = 300) -> float:
    """Seconds until the router has answered from web.1 .. web.<count>."""
    started = time.monotonic()
    wanted = {f"web.{n}" for n in range(1, count + 1)}
    seen: set[str] = set()
    with server.router(APP) as router:
        while seen != wanted:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"only {sorted(seen)} answered in {timeout:g} s")
            answer = router.get("/")
            if answer.status_code == 200:
                seen.add(answer.json()["dyno"])
            else:
                time.sleep(0.02)
    return time.monotonic() - started


def release_image(server: RunningServer) -> str:
    services = subprocess.run(
        ["docker", "service", "ls", "--format", "{{.Name}} {{.Image}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for line in services:
        if f"-{APP}-web-" in line:
            return line.split()[1]
    raise SystemExit("no web service of the app")


def one_container(image: str) -> float:
    """Seconds from `docker run -d` of ``image`` (the app's web process) to its answer."""
    started = time.monotonic()
    container = subprocess.run(
        [
            *("docker", "run", "-d", "--rm", "-e", "PORT=5000", "-e", "DYNO=web.1"),
            *("-p", "127.0.0.1::5000", image, "python3", "web.py"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        port = (
            subprocess.run(
                ["docker", "port", container, "5000/tcp"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.split(":")[-1]
            .strip()
        )
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                    json.load(answer)
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def states(server: RunningServer) -> dict[str, tuple[str, str]]:
    """The dynos' states and nodes, from the API (what `ps --json` shows: the CLI itself takes
    about a second to start, too coarse to time a dead node's dynos out)."""
    with server.api() as api:
        listed = api.get(f"/apps/{APP}/dynos").json()
    return {d["name"]: (d["state"], d["node"]) for d in listed}


class Load:
    """GETs one after another through the router, in a thread, counted."""

    def __init__(self, server: RunningServer) -> None:
        self.counts = {"ok": 0, "failed": 0}
        self.greetings: set[str] = set()
        self._done = threading.Event()
        self._server = server
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        with self._server.router(APP) as router:
            while not self._done.is_set():
                answer = router.get("/")
                ok = answer.status_code == 200
                self.counts["ok" if ok else "failed"] += 1
                if ok:
                    self.greetings.add(f"{answer.json()['dyno']}={answer.json()['greeting']}")

    def stop(self) -> str:
        self._done.set()
        self._thread.join()
        return f"{self.counts['failed']} of {sum(self.counts.values())} GETs failed"


def deploy_under_load(server: RunningServer) -> None:
    server.scale(APP, web=2)
    wait_for_dynos(server, APP, {"web.1": "up", "web.2": "up"}, 300)
    load = Load(server)
    time.sleep(2)
    started = time.monotonic()
    server.cli("config:set", "GREETING=rolled", "-a", APP)
    while {"web.1=rolled", "web.2=rolled"} - load.greetings:
        if time.monotonic() - started > 120:
            break
        time.sleep(0.1)
    rolled = time.monotonic() - started
    time.sleep(2)
    codes: dict[str, int] = {}
    for word in server.logs(APP).split():
        if word.startswith("code=H"):
            codes[word[5:]] = codes.get(word[5:], 0) + 1
    print(
        f"config change under GETs: {load.stop()} (router codes in the log: {codes}); both "
        f"dynos served it after {rolled:.1f} s"
    )


def kill_node(server: RunningServer) -> None:
    server.scale(APP, web=2)
    wait_for_dynos(server, APP, {"web.1": "up", "web.2": "up"}, 300)
    dead = "dynos-lab-2"
    if dead not in {node for _state, node in states(server).values()}:
        raise SystemExit("web=2 is not spread over both nodes: run again")
    counts = {"ok": 0, "failed": 0}
    done = threading.Event()

    def load() -> None:
        with server.router(APP) as router:
            while not done.is_set():
                ok = router.get("/").status_code == 200
                counts["ok" if ok else "failed"] += 1

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(2)
    killed = time.monotonic()
    os.kill(int(Path("/run/dynos-lab/node2.pid").read_text()), signal.SIGKILL)
    out = back = None
    try:
        while back is None and time.monotonic() - killed < 120:
            now = states(server)
            if out is None and all(node != dead or state != "up" for state, node in now.values()):
                out = time.monotonic() - killed
            all_up = len(now) == 2 and all(state == "up" for state, _node in now.values())
            if out is not None and all_up and dead not in {node for _s, node in now.values()}:
                back = time.monotonic() - killed
            time.sleep(0.05)
    finally:
        done.set()
        loader.join()
        lab = Path(__file__).resolve().parents[1] / "scripts" / "swarm-lab"
        subprocess.run([str(lab), "up"], capture_output=True, check=True)
    print(
        f"kill -9 of {dead}'s dockerd: {counts['failed']} of {sum(counts.values())} GETs "
        f"failed; its dyno out of the router after {out or float('nan'):.1f} s; both up "
        f"again after {back or float('nan'):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deploy", action="store_true")
    parser.add_argument("--kill-node", action="store_true")
    args = parser.parse_args()
    scaled: list[float] = []
    single: list[float] = []
    with private_server("--backend", "swarm", "--registry", "127.0.0.1:5000") as server:
        server.create_app(APP)
        server.deploy(APP, SWARM_APP)
        server.scale(APP, web=1)
        wait_for_dynos(server, APP, {"web.1": "up"}, 300)
        image = release_image(server)
        for round_ in range(args.rounds):
            single.append(one_container(image))
            started = time.monotonic()
            server.scale(APP, web=8)
            routed_all(server, 8)
            scaled.append(time.monotonic() - started)
            nodes = {d["node"] for d in json.loads(server.cli("ps", "--json", "-a", APP).stdout)}
            print(
                f"round {round_ + 1}: one container answers in {single[-1]:.2f} s; web=1 -> 8 "
                f"all routed in {scaled[-1]:.2f} s over nodes {sorted(nodes)}",
                flush=True,
            )
            server.scale(APP, web=1)
            wait_for_dynos(server, APP, {"web.1": "up"}, 300)
        if args.deploy:
            deploy_under_load(server)
        if args.kill_node:
            kill_node(server)
    print(f"\n{machine()}")
    one, eight = statistics.median(single), statistics.median(scaled)
    print(f"median: one container {one:.2f} s; web=1 -> 8 all routed {eight:.2f} s")
    print(f"scale to 8 / one container start: {eight / one:.1f}x")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
