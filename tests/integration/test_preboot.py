"""Preboot and health checks against a real server, real dynos and the real router.

One app per test, on a server of its own (the preboot's timings must not share the machine
with another test's dynos). The app (apps/preboot) has a startup check (GET /health, which
must say "healthy") and a liveness check (GET /live) in its app.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dynos.testing.harness import (
    RunningServer,
    dyno_states,
    start_server,
    tarball,
    wait_for,
    wait_for_dynos,
)
from dynos.testing.load import SteadyLoad

APP_DIR = Path(__file__).parent / "apps" / "preboot"
APP = "pre"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "home", "--stop-grace", "5", "--boot-timeout", "20")
    yield running
    if running.process.poll() is None:
        running.stop()


def set_config(server: RunningServer, **values: str) -> None:
    with server.api() as api:
        api.patch(f"/apps/{APP}/config-vars", json=values).raise_for_status()


def dynos(server: RunningServer) -> dict[str, tuple[str, int]]:
    with server.api() as api:
        found = api.get(f"/apps/{APP}/dynos").json()
    return {d["name"]: (d["state"], d["release"]["version"]) for d in found}


def deployed(server: RunningServer, web: int) -> int:
    """The app deployed with ``web`` dynos up; its release version."""
    server.create_app(APP)
    release = server.deploy(APP, APP_DIR)
    server.scale(APP, web=web)
    names = {f"web.{n}" for n in range(1, web + 1)}
    wait_for(lambda: dyno_states(server, APP) == dict.fromkeys(names, "up"), what="web up")
    return int(release["version"])  # type: ignore[call-overload]


def settled(server: RunningServer, version: int, web: int) -> bool:
    want = {f"web.{n}": ("up", version) for n in range(1, web + 1)}
    return dynos(server) == want


def test_a_preboot_deploy_under_steady_load_fails_no_request(server: RunningServer) -> None:
    before = deployed(server, web=2)
    enabled = server.cli("features:enable", "preboot", "-a", APP)
    assert "Enabling preboot for" in enabled.stdout
    assert "[+] preboot" in server.cli("features", "-a", APP).stdout
    load = SteadyLoad(server.router_port, APP, rate=100).start()
    time.sleep(1)
    set_config(server, VERSION="2", BOOT_DELAY="1")  # a new release: v(before + 1)
    seen: set[str] = set()

    def switched() -> bool:
        now = dynos(server)
        seen.update(now)
        return now == {"web.1": ("up", before + 1), "web.2": ("up", before + 1)}

    wait_for(switched, timeout=60, what="the new release's web dynos alone, up")
    # A deploy and a rollback preboot as well, under the same load.
    server.deploy(APP, APP_DIR)
    wait_for(lambda: settled(server, before + 2, web=2), timeout=60, what="the deploy's dynos")
    with server.api() as api:
        rollback = {"release": str(before + 1)}
        api.post(f"/apps/{APP}/releases", json=rollback).raise_for_status()
    wait_for(lambda: settled(server, before + 3, web=2), timeout=60, what="the rollback's")
    time.sleep(1)
    result = load.stop()
    assert result.failed == 0, result.failures
    assert result.sent >= 100  # the rate asked is 100/s; a loaded machine sends fewer
    # Both releases answered, the old one until the switch: the preboot ran beside it.
    versions = {json.loads(body)["version"] for body in result.bodies}
    assert versions == {None, "2"}
    assert {f"web.1.v{before}", f"web.2.v{before}"} <= seen  # ps showed the old ones, renamed
    logs = server.logs(APP)
    assert logs.count("Preboot: every new web dyno passed: switched") == 6  # 3 times 2 dynos
    assert f"Preboot of v{before + 1}: starting beside web.1.v{before}, web.2.v{before}" in logs


def test_new_dynos_failing_their_health_check_leave_the_old_release_serving(
    server: RunningServer,
) -> None:
    before = deployed(server, web=1)
    server.cli("features:enable", "preboot", "-a", APP)
    load = SteadyLoad(server.router_port, APP, rate=50).start()
    set_config(server, HEALTH="fail")

    def failed() -> bool:
        return "Preboot failed" in server.logs(APP) and settled(server, before, web=1)

    wait_for(failed, timeout=60, what="the preboot to fail and the old dyno to serve on")
    time.sleep(1)
    result = load.stop()
    assert result.failed == 0, result.failures
    logs = server.logs(APP)
    assert "Web process failed its startup check 'ready' (GET /health): answered 503" in logs
    assert "Preboot failed: web.1 exited before passing its health checks" in logs
    assert "the old web dynos serve on" in logs
    time.sleep(2)  # and it is not tried again for the same release
    assert settled(server, before, web=1)
    assert logs.count("Preboot of v") == 1


def test_a_dyno_failing_its_liveness_check_is_restarted_with_a_reason(
    server: RunningServer,
) -> None:
    deployed(server, web=1)
    with server.api() as api:
        first = api.get(f"/apps/{APP}/dynos/web.1").json()["id"]
    with server.router(APP) as client:
        assert client.get("/break").status_code == 200

    def restarted() -> bool:
        with server.api() as api:
            dyno = api.get(f"/apps/{APP}/dynos/web.1").json()
        return dyno["id"] != first or "Liveness check failed" in server.logs(APP)

    wait_for(restarted, timeout=30, what="web.1 restarted by its liveness check")
    wait_for_dynos(server, APP, {"web.1": "up"})
    logs = server.logs(APP)
    assert (
        "dynos[web.1]: Liveness check failed: liveness check GET /live answered 500, "
        "2 times in a row: restarting the dyno"
    ) in logs  # the platform's line (Heroku's heroku[web.1]), then the restart's
    assert "dynos[web.1]: State changed from up to crashed" in logs
    with server.router(APP) as client:
        assert client.get("/live").text == "alive"


def test_startup_checks_gate_a_dyno_without_preboot(server: RunningServer) -> None:
    server.create_app(APP)
    server.deploy(APP, APP_DIR)
    set_config(server, BOOT_DELAY="0", HEALTH="fail")
    server.scale(APP, web=1)
    wait_for(lambda: "Web process failed its startup check" in server.logs(APP), timeout=30)
    assert dyno_states(server, APP)["web.1"] != "up"
    # The dyno listens, but never passed its check: the router holds the request (a dyno is
    # coming) or fails it; it never reaches the dyno.
    with server.router(APP) as client:
        try:
            status = client.get("/", timeout=2).status_code
        except httpx.TimeoutException:
            status = None
    assert status is None or status >= 500
    assert "Error R10 (Boot timeout) -> Web process failed its startup check" in server.logs(APP)


def test_a_bad_app_json_fails_the_deploy_with_its_reason(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app(APP)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Procfile").write_text((APP_DIR / "Procfile").read_text())
    (broken / "web.py").write_text((APP_DIR / "web.py").read_text())
    (broken / "app.json").write_text('{"healthchecks": {"web": [{"path": "/", "port": 5000}]}}')
    failed = server.cli("deploy", str(broken), "-a", APP, check=False)
    assert failed.returncode == 1
    assert "app.json: healthchecks.web[0].port dynos checks each web dyno on its own $PORT" in (
        failed.stderr + failed.stdout
    )
    with server.api() as api:
        refused = api.post(
            f"/apps/{APP}/deploys",
            content=tarball(broken),
            headers={"Content-Type": "application/gzip"},
        )
        assert refused.status_code == 422
        assert refused.json()["id"] == "invalid_params"
        assert refused.json()["message"].startswith("app.json: healthchecks.web[0].port")
        assert [r["version"] for r in api.get(f"/apps/{APP}/releases").json()] == [1]
