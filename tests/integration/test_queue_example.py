"""examples/queue end to end: a pip build of RQ, a managed Redis, a web process that enqueues
and worker dynos that run the jobs. Needs redis-server and PyPI (one build)."""

from __future__ import annotations

import shutil
import time
from typing import Any

import psutil
import pytest

from dynos.testing.harness import dyno_states
from tests.integration.conftest import EXAMPLES, RunningServer, wait_for

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(240),
]


def stats(server: RunningServer, app: str = "queue") -> dict[str, Any]:
    with server.router(app) as web:
        response = web.get("/stats")
    return response.json() if response.status_code == 200 else {}  # type: ignore[no-any-return]


def app_said(server: RunningServer) -> str:
    """The app's own error about its missing Redis ("" while the router answers for it)."""
    with server.router("queue") as web:
        response = web.get("/stats")
    if not response.headers.get("content-type", "").startswith("application/json"):
        return ""
    return str(response.json().get("error", ""))


def test_web_enqueues_and_scaled_workers_run_every_job_once(server: RunningServer) -> None:
    server.create_app("queue")
    server.deploy("queue", EXAMPLES / "queue")  # builds rq and redis with pip
    wait_for(lambda: "addons:create redis" in app_said(server), what="web up, without Redis")
    server.cli("addons:create", "redis", "-a", "queue")
    server.cli("ps:scale", "worker=2", "-a", "queue")
    wait_for(lambda: stats(server).get("workers") == 2, timeout=60, what="two workers")
    with server.router("queue") as web:
        answer = web.post("/jobs", params={"count": 20, "seconds": 0.05})
    assert answer.status_code == 201 and answer.json()["enqueued"] == 20
    wait_for(lambda: stats(server).get("ran") == 20, timeout=60, what="the backlog drained")
    final = stats(server)
    assert final["ran_twice"] == 0 and final["failed"] == 0 and final["queued"] == 0
    logs = server.logs("queue")
    assert "app[worker.1]" in logs and "app[worker.2]" in logs  # both took jobs
    assert "Job OK" in logs


def workers(server: RunningServer) -> list[str]:
    return sorted(n for n in dyno_states(server, "autoq") if n.startswith("worker."))


def test_workers_autoscale_from_zero_by_queue_depth_and_back_to_zero(
    server: RunningServer,
) -> None:
    server.create_app("autoq")
    server.deploy("autoq", EXAMPLES / "queue")
    server.cli("addons:create", "redis", "-a", "autoq")
    bad = server.cli("ps:autoscale:enable", "worker", "--max", "3", "-a", "autoq", check=False)
    assert bad.returncode == 1 and "--queue rq:NAME" in bad.stderr  # and nothing turned on
    server.cli(
        *("ps:autoscale:enable", "worker", "--min", "0", "--max", "3", "--queue", "rq:default"),
        *("--per-dyno", "5", "--cooldown", "3", "-a", "autoq"),
    )
    wait_for(lambda: "watching rq:default" in server.cli("ps:autoscale", "-a", "autoq").stdout)
    assert workers(server) == []
    with server.router("autoq") as web:
        wait_for(lambda: web.post("/reset").status_code == 200, what="web up with Redis")
        started = time.monotonic()
        answer = web.post("/jobs", params={"count": 30, "seconds": 0.3})
    assert answer.status_code == 201
    # Woken by the push (a keyspace event), not by a poll: a worker dyno within seconds.
    wait_for(lambda: workers(server) != [], timeout=10, what="a worker started")
    assert time.monotonic() - started < 5
    wait_for(lambda: workers(server) == ["worker.1", "worker.2", "worker.3"], what="3 workers")
    wait_for(lambda: stats(server, "autoq").get("ran") == 30, timeout=60, what="all jobs ran")
    final = stats(server, "autoq")
    assert final["ran_twice"] == 0 and final["failed"] == 0
    wait_for(lambda: workers(server) == [], timeout=30, what="back to zero after the cooldown")
    logs = server.logs("autoq")
    assert "app[autoscaler]: scale from=0 to=1 depth=" in logs or "scale from=0 to=" in logs
    assert 'target=5/dyno reason="queue empty"' in logs
    shown = server.cli("ps:autoscale", "-a", "autoq").stdout
    assert "rq:default" in shown and "queue empty" in shown
    # A manual scale turns it off, and says so.
    scaled = server.cli("ps:scale", "worker=1", "-a", "autoq")
    assert "Autoscaling of worker is now off" in scaled.stderr
    assert "No process type autoscales" in server.cli("ps:autoscale", "-a", "autoq").stdout


def test_autoscaling_stops_at_what_the_hosts_memory_holds_and_says_so(
    server: RunningServer,
) -> None:
    """Performance-L dynos (14 GB quota each): wanted more than the host's memory holds, the
    autoscaler starts what fits and logs one capacity line instead of overcommitting."""
    server.create_app("roomy")
    server.deploy("roomy", EXAMPLES / "queue")
    server.cli("addons:create", "redis", "-a", "roomy")
    server.cli("ps:type", "worker=Performance-L", "-a", "roomy")
    host_mb = psutil.virtual_memory().total // 2**20
    most = host_mb // 14_336 + 2  # always more than fit
    server.cli(
        *("ps:autoscale:enable", "worker", "--min", "0", "--max", str(most)),
        *("--queue", "rq:default", "--per-dyno", "1", "-a", "roomy"),
    )
    wait_for(lambda: "watching rq:default" in server.cli("ps:autoscale", "-a", "roomy").stdout)
    with server.router("roomy") as web:
        wait_for(lambda: web.post("/reset").status_code == 200, what="web up with Redis")
        assert web.post("/jobs", params={"count": most, "seconds": 20}).status_code == 201

    def capacity_line() -> str:
        lines = [line for line in server.logs("roomy").splitlines() if "capacity wanted=" in line]
        return lines[0] if lines else ""

    wait_for(capacity_line, timeout=20, what="the capacity line")
    line = capacity_line()
    assert f"capacity wanted={most} fits=" in line and f"host={host_mb}MB" in line
    fits = int(line.split("fits=")[1].split()[0])
    assert fits < most
    time.sleep(2)  # a reading or two later: still no more than fits, and said once
    with server.api() as api:
        [worker] = [f for f in api.get("/apps/roomy/formation").json() if f["type"] == "worker"]
    assert worker["quantity"] == fits
    capacity_lines = [ln for ln in server.logs("roomy").splitlines() if "capacity wanted=" in ln]
    assert len(capacity_lines) == 1, "\n".join(capacity_lines)
