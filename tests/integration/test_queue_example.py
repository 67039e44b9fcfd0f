"""examples/queue end to end: a pip build of RQ, a managed Redis, a web process that enqueues
and worker dynos that run the jobs. Needs redis-server and PyPI (one build)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.integration.conftest import EXAMPLES, RunningServer, wait_for

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(240),
]


def stats(server: RunningServer) -> dict[str, Any]:
    with server.router("queue") as web:
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
