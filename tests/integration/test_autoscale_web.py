"""Web autoscaling against a real server: the serial app of bench/apps (one request at a time,
50 ms each) under more load than one dyno takes, scaled up by the router's p95."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.integration.conftest import RunningServer, wait_for

SERIAL = Path(__file__).resolve().parents[2] / "bench" / "apps" / "serial_web"


def web_quantity(server: RunningServer, app: str) -> int:
    with server.api() as api:
        [web] = [f for f in api.get(f"/apps/{app}/formation").json() if f["type"] == "web"]
    return int(web["quantity"])


def test_web_dynos_scale_up_when_the_p95_is_over_its_target(server: RunningServer) -> None:
    server.create_app("busy")
    server.deploy("busy", SERIAL)
    refused = server.cli("ps:autoscale:enable", "web", "--max", "4", "-a", "busy", check=False)
    assert refused.returncode == 1 and "--p95 MS or --queue-time MS" in refused.stderr
    server.cli(
        "ps:autoscale:enable", "web", "--min", "1", "--max", "4", "--p95", "150", "-a", "busy"
    )
    wait_for(lambda: "watching p95" in server.cli("ps:autoscale", "-a", "busy").stdout)
    assert web_quantity(server, "busy") == 1

    # Eight clients back to back: one 50 ms dyno answers 20 a second, each request waits
    # for the seven before it (p95 about 400 ms, over the 150 ms target).
    stop = threading.Event()
    failures: list[int] = []

    def client() -> None:
        with server.router("busy") as web:
            while not stop.is_set():
                try:
                    status = web.get("/").status_code
                except httpx.HTTPError:
                    status = 0
                if status != 200:
                    failures.append(status)

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    try:
        wait_for(lambda: web_quantity(server, "busy") > 1, timeout=60, what="a scale-up")
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    lines = [line for line in server.logs("busy").splitlines() if "app[autoscaler]" in line]
    assert lines, server.logs("busy")
    assert "scale from=1 to=" in lines[0] and 'target=p95<150ms reason="' in lines[0], lines
    assert not failures, failures[:10]  # the router held or routed every request
    shown = server.cli("ps:autoscale", "-a", "busy").stdout
    assert "p95 under 150 ms" in shown and "1 → " in shown
