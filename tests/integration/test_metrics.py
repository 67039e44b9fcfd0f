"""Issue 16's metrics against a real server: a real dyno takes real requests through two
router processes, and ``GET /apps/{app}/metrics`` counts them exactly, with plausible
response times, memory and load, and the events; the router's ``X-Request-Start`` as the
dyno sees it; ``dynos labs:enable log-runtime-metrics`` and its lines; and what was counted
survives a restart of the server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynos.testing.harness import RunningServer, start_server, wait_for, wait_for_dynos

pytestmark = pytest.mark.timeout(300)

HEADECHO = Path(__file__).parent / "apps" / "headecho"
APP = "metered"
GETS = 30
POSTS = 4  # headecho has no do_POST: http.server answers 501


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics") / "home"


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[RunningServer]:
    running = start_server(
        home, "--stop-grace", "5", "--router-processes", "2", "--runtime-metrics-every", "1"
    )
    try:
        running.create_app(APP)
        running.deploy(APP, HEADECHO)
        running.scale(APP, web=1)
        wait_for_dynos(running, APP, {"web.1": "up"})
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


def metrics(server: RunningServer, **params: str) -> dict[str, Any]:
    with server.api() as api:
        answer = api.get(f"/apps/{APP}/metrics", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def total(column: list[int | None]) -> int:
    return sum(v for v in column if v is not None)


def test_the_metrics_count_every_request_a_real_dyno_answered(server: RunningServer) -> None:
    # New connections each time: the kernel spreads them over both router processes.
    for _ in range(GETS):
        with server.router(APP) as client:
            assert client.get("/").status_code == 200
    for _ in range(POSTS):
        with server.router(APP) as client:
            assert client.post("/", content=b"x").status_code == 501

    def counted() -> bool:
        series = metrics(server)["series"]
        return total(series["requests_2xx"]) == GETS and total(series["requests_5xx"]) == POSTS

    wait_for(counted, timeout=20, what="the requests in the metrics")
    report = metrics(server)
    series = report["series"]
    assert (report["app"], report["process_type"], report["window"]) == (APP, "web", "1h")
    assert report["step_seconds"] == 60 and len(series["at"]) == 60
    assert series["at"] == sorted(series["at"]) and series["at"][-1] <= time.time()
    assert total(series["requests_4xx"]) == 0 and total(series["requests_3xx"]) == 0
    assert report["router_errors"] == {}  # a 501 from the app is not the router's
    p50 = [v for v in series["response_time_p50_ms"] if v is not None]
    p99 = [v for v in series["response_time_p99_ms"] if v is not None]
    assert p50 and all(0 <= v < 2000 for v in p50) and max(p99) >= min(p50)
    assert report["memory_quota_mb"] == 512

    def sampled() -> bool:
        return any(v for v in metrics(server)["series"]["memory_rss_mb_max"] if v)

    wait_for(sampled, timeout=20, what="a memory sample")
    series = metrics(server)["series"]
    rss = [v for v in series["memory_rss_mb_max"] if v is not None]
    assert all(1 < v < 512 for v in rss)  # a small Python server
    assert any(v is not None and v >= 0 for v in series["load_max"])
    kinds = {e["kind"] for e in metrics(server)["events"]}
    assert {"deploy", "scale"} <= kinds
    assert all(e["kind"] in kinds for e in metrics(server, window="7d")["events"])
    printed = server.cli("metrics", "-a", APP).stdout
    assert f"=== {APP} web metrics, last 1h (1-minute steps)" in printed
    assert f"{GETS}/min in all" in printed and "Events" in printed
    week = metrics(server, window="7d")
    assert week["step_seconds"] == 600 and len(week["series"]["at"]) == 7 * 144
    assert total(week["series"]["requests_2xx"]) == GETS


def test_bad_windows_and_types_are_refused(server: RunningServer) -> None:
    with server.api() as api:
        window = api.get(f"/apps/{APP}/metrics", params={"window": "2h"})
        assert window.status_code == 422 and "1h, 6h, 24h, 7d" in window.json()["message"]
        kind = api.get(f"/apps/{APP}/metrics", params={"process_type": "clock"})
        assert kind.status_code == 422 and "has no process type 'clock'" in kind.json()["message"]
        bad = api.get(f"/apps/{APP}/metrics", params={"process_type": "../x"})
        assert bad.status_code == 422
        missing = api.get("/apps/no-such-app/metrics")
        assert missing.status_code == 404 and missing.json()["id"] == "not_found"


def test_the_router_sends_x_request_start_and_replaces_a_clients(server: RunningServer) -> None:
    before = int(time.time() * 1000)
    with server.router(APP) as client:
        echoed = client.get("/", headers={"X-Request-Start": "1"}).json()
    after = int(time.time() * 1000)
    values = [v for k, v in echoed["headers"] if k.lower() == "x-request-start"]
    assert len(values) == 1, echoed["headers"]
    assert before <= int(values[0]) <= after


def test_labs_log_runtime_metrics_writes_herokus_lines(server: RunningServer) -> None:
    enabled = server.cli("labs:enable", "log-runtime-metrics", "-a", APP)
    assert f"Enabling log-runtime-metrics for ⬢ {APP}... done" in enabled.stdout
    assert "[+] log-runtime-metrics" in server.cli("labs", "-a", APP).stdout
    head = r"dynos\[web\.1\]: source=web\.1 dyno=heroku\.[0-9a-f-]{36}\.[0-9a-f-]{36}"
    memory = re.compile(
        head + r" sample#memory_total=\d+\.\d\dMB sample#memory_rss=\d+\.\d\dMB"
        r" sample#memory_cache=\d+\.\d\dMB sample#memory_swap=\d+\.\d\dMB"
        r" sample#memory_pgpgin=\d+pages sample#memory_pgpgout=\d+pages"
        r" sample#memory_quota=512\.00MB$",
        re.MULTILINE,
    )
    load = re.compile(
        head + r" sample#load_avg_1m=\d+\.\d\d sample#load_avg_5m=\d+\.\d\d"
        r" sample#load_avg_15m=\d+\.\d\d$",
        re.MULTILINE,
    )
    wait_for(
        lambda: bool(memory.search(server.logs(APP)) and load.search(server.logs(APP))),
        timeout=30,
        what="the runtime metrics lines",
    )
    server.cli("labs:disable", "log-runtime-metrics", "-a", APP)
    time.sleep(3)  # the lines stop: none in the last seconds (the sampling runs every 1 s)
    lines_before = server.logs(APP).count("sample#memory_total")
    time.sleep(3)
    assert server.logs(APP).count("sample#memory_total") == lines_before


def test_the_metrics_survive_a_restart(server: RunningServer, home: Path) -> None:
    before = metrics(server)["series"]
    assert server.stop() == 0
    again = start_server(home, "--stop-grace", "5")
    try:
        with again.api() as api:
            answer = api.get(f"/apps/{APP}/metrics").json()
        series = answer["series"]
        assert total(series["requests_2xx"]) == total(before["requests_2xx"]) >= GETS
        assert total(series["requests_5xx"]) == POSTS
        assert any(v for v in series["memory_rss_mb_max"] if v)
        assert {"deploy", "scale"} <= {e["kind"] for e in answer["events"]}
    finally:
        again.stop()
