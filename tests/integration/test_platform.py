"""The walking skeleton end to end: real server, real dynos, real sockets."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from dynos.testing.harness import RunningServer, dyno_states, start_server, tarball, wait_for
from tests.integration.conftest import EXAMPLES, each_test, started

ENVECHO = Path(__file__).parent / "apps" / "envecho"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: each test uses apps of its own and looks only at them."""
    yield from started(tmp_path_factory.mktemp("platform") / "home", "--stop-grace", "5")


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


def create_app(server: RunningServer, name: str) -> None:
    with server.api() as api:
        assert api.post("/apps", json={"name": name}).status_code == 201


def all_up(server: RunningServer, app: str, expected: set[str], release: int = 0) -> bool:
    """Whether exactly the ``expected`` dynos run, all up (and on ``release`` or later)."""
    with server.api() as api:
        dynos = api.get(f"/apps/{app}/dynos").json()
    return {d["name"] for d in dynos} == expected and all(
        d["state"] == "up" and d["release"]["version"] >= release for d in dynos
    )


def test_deploy_scale_route_and_shutdown_leave_no_dyno_behind(own_server: RunningServer) -> None:
    server = own_server  # it counts every process of its server, then stops it
    create_app(server, "hello")
    release = server.deploy("hello", EXAMPLES / "hello")
    assert release["version"] == 2  # v1 is the app's initial release
    wait_for(lambda: all_up(server, "hello", {"web.1"}), what="web.1 up")
    with server.router("hello") as router:
        assert router.get("/").text == "Hello from web.1!\n"

    server.cli("ps:scale", "web=3", "worker=2", "-a", "hello")
    expected = {"web.1", "web.2", "web.3", "worker.1", "worker.2"}
    wait_for(lambda: all_up(server, "hello", expected), what="5 dynos up")
    with server.router("hello") as router:
        # Sequential requests leave every dyno idle, so the two-choices balancer picks at
        # random: 60 requests miss one of three dynos with probability 3 * (2/3)^60.
        seen = {router.get("/").text for _ in range(60)}
    assert seen == {f"Hello from web.{n}!\n" for n in (1, 2, 3)}

    server.cli("ps:scale", "web=1", "worker-1", "-a", "hello")
    wait_for(lambda: all_up(server, "hello", {"web.1", "worker.1"}), what="scale down")

    dynos = psutil.Process(server.process.pid).children(recursive=True)
    assert len(dynos) >= 2
    assert server.stop() == 0
    _, alive = psutil.wait_procs(dynos, timeout=5)
    assert alive == []


def test_server_restart_restores_apps_config_and_formation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(home)
    try:
        create_app(first, "keep")
        first.deploy("keep", ENVECHO)
        with first.api() as api:
            api.patch("/apps/keep/config-vars", json={"GREETING": "hi"}).raise_for_status()
            updates = [{"type": "web", "quantity": 2}, {"type": "worker", "quantity": 1}]
            api.patch("/apps/keep/formation", json={"updates": updates}).raise_for_status()
        wait_for(lambda: all_up(first, "keep", {"web.1", "web.2", "worker.1"}, release=3))
    finally:
        assert first.stop() == 0

    second = start_server(home)
    try:
        wait_for(lambda: all_up(second, "keep", {"web.1", "web.2", "worker.1"}))
        with second.api() as api:
            assert api.get("/apps/keep/config-vars").json() == {"GREETING": "hi"}
            versions = [r["version"] for r in api.get("/apps/keep/releases").json()]
            assert versions == [1, 2, 3]
        with second.router("keep") as router:
            assert router.get("/").json()["env"]["GREETING"] == "hi"
    finally:
        assert second.stop() == 0


def test_dyno_environment_has_config_port_and_dyno_but_nothing_of_the_server(
    server: RunningServer,
) -> None:
    create_app(server, "envy")
    server.deploy("envy", ENVECHO)
    with server.api() as api:
        api.patch("/apps/envy/config-vars", json={"SECRET_KEY": "s3"}).raise_for_status()
    wait_for(lambda: all_up(server, "envy", {"web.1"}, release=3))
    with server.router("envy") as router:
        env = router.get("/").json()["env"]
    assert env["SECRET_KEY"] == "s3"
    assert env["DYNO"] == "web.1"
    assert env["PORT"].isdigit()
    assert {"PATH", "HOME", "LANG"} <= env.keys()
    assert not [k for k in env if k.startswith("DYNOS_")]
    assert server.token not in str(env)


def test_bad_procfile_is_refused_and_changes_nothing(server: RunningServer, tmp_path: Path) -> None:
    create_app(server, "badproc")
    server.deploy("badproc", ENVECHO)
    broken = tmp_path / "broken"
    shutil.copytree(ENVECHO, broken)
    (broken / "Procfile").write_text("web: python3 web.py\nthis is not a process line\n")
    with server.api() as api:
        response = api.post(
            "/apps/badproc/deploys",
            content=tarball(broken),
            headers={"Content-Type": "application/gzip"},
        )
        assert response.status_code == 422
        assert "Procfile line 2" in response.json()["message"]
        assert len(api.get("/apps/badproc/releases").json()) == 2
    result = server.cli("deploy", str(broken), "-a", "badproc", check=False)
    assert result.returncode == 1
    assert "Procfile line 2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_failed_build_keeps_the_previous_release_running(
    server: RunningServer, tmp_path: Path
) -> None:
    create_app(server, "builds")
    app_dir = tmp_path / "app"
    shutil.copytree(ENVECHO, app_dir)
    (app_dir / "requirements.txt").write_text("# nothing to install\n")
    server.deploy("builds", app_dir)
    wait_for(lambda: all_up(server, "builds", {"web.1"}))
    with server.router("builds") as router:
        prefix = router.get("/").json()["prefix"]
    assert prefix.endswith(".venv")  # the dyno runs in the release's own virtualenv

    (app_dir / "requirements.txt").write_text("./no-such-local-package\n")
    result = server.cli("deploy", str(app_dir), "-a", "builds", check=False)
    assert result.returncode == 1
    assert "Build failed" in result.stderr
    with server.api() as api:
        assert len(api.get("/apps/builds/releases").json()) == 2
    assert dyno_states(server, "builds") == {"web.1": "up"}


def test_crashed_dyno_is_started_again_and_logged(server: RunningServer) -> None:
    create_app(server, "crashy")
    server.deploy("crashy", ENVECHO)
    wait_for(lambda: all_up(server, "crashy", {"web.1"}))
    with server.router("crashy") as router:
        response = router.get("/crash")
    assert response.status_code == 503  # the dyno closed the connection without a response
    wait_for(lambda: "Process exited with status 3" in server.cli("logs", "-a", "crashy").stdout)
    wait_for(lambda: all_up(server, "crashy", {"web.1"}), what="web.1 back up")
    logs = server.cli("logs", "-a", "crashy", "-n", "200").stdout
    assert "dynos[web.1]: State changed from up to crashed" in logs
    assert "app[web.1]: booting web.1" in logs


def test_api_requires_the_token(server: RunningServer) -> None:
    response = httpx.get(f"{server.api_url}/apps")
    assert response.status_code == 401
    assert response.json()["id"] == "unauthorized"
    with server.api() as api:
        assert api.get("/apps/nope").json()["id"] == "not_found"
    assert (server.home / "credentials").stat().st_mode & 0o777 == 0o600


def test_metrics_count_router_requests_per_app_in_prometheus_format(
    server: RunningServer,
) -> None:
    create_app(server, "counted")
    server.deploy("counted", ENVECHO)
    wait_for(lambda: all_up(server, "counted", {"web.1"}))
    with server.router("counted") as router:
        for _ in range(3):
            assert router.get("/").status_code == 200

    def scraped() -> httpx.Response:
        with server.api() as api:
            return api.get("/metrics")

    # With --router-processes above 1, the others report their figures twice a second.
    counted = 'dynos_router_requests_total{app="counted",status="200"} 3.0'
    wait_for(lambda: counted in scraped().text, 10, "the three requests counted")
    response = scraped()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "dynos_router_request_duration_seconds_bucket" in response.text
    assert httpx.get(f"{server.api_url}/metrics").status_code == 401
