"""What a new user tripped on (issue 13, item 5), against a real server with the real CLI."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dynos.core.sizes import SIZES
from dynos.testing.harness import RunningServer, start_server, wait_for

pytestmark = pytest.mark.timeout(180)

ARGS = "import sys; print('args', sys.argv[1:])"
# A web process that says its port, binds it 5 s later, and answers.
BIND_LATE = """\
import http.server, os, sys, time
port = int(os.environ["PORT"])
print("port", port, flush=True)
time.sleep(5)  # time for the test to take the port first
try:
    server = http.server.HTTPServer(("0.0.0.0", port), http.server.SimpleHTTPRequestHandler)
except OSError as exc:
    print("bind failed:", exc, flush=True)
    sys.exit(1)
print("bound", port, flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("newuser") / "home"
    running = start_server(home, "--stop-grace", "2")
    yield running
    if running.process.poll() is None:
        running.stop()


def make_app(server: RunningServer, tmp_path: Path, procfile: str, **files: str) -> str:
    app = f"app-{uuid.uuid4().hex[:8]}"
    source = tmp_path / app
    source.mkdir()
    (source / "Procfile").write_text(procfile)
    (source / "args.py").write_text(ARGS)
    for name, text in files.items():
        (source / name).write_text(text)
    server.create_app(app)
    server.deploy(app, source)
    return app


def test_run_takes_its_options_after_the_command_and_passes_what_follows_dashes(
    server: RunningServer, tmp_path: Path
) -> None:
    """Regression: `dynos run python3 manage.py migrate -a myapp` said "No app specified"."""
    app = make_app(server, tmp_path, "worker: sleep 1000\n")
    after = server.cli("run", "--no-tty", "python3", "args.py", "x", "-a", app, "-e", "K=v")
    assert after.stdout.strip() == "args ['x']"
    dashes = server.cli("run", "--no-tty", "-a", app, "--", "python3", "args.py", "-a", "--x")
    assert dashes.stdout.strip() == "args ['-a', '--x']"
    detached = server.cli("run:detached", "python3 args.py late", "--app", app)
    assert "done, run." in detached.stdout
    wait_for(lambda: "args ['late']" in server.logs(app), 30, "the detached run's output")


def test_restart_is_ps_restart(server: RunningServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path, "worker: sleep 1000\n")
    result = server.cli("restart", "-a", app)
    assert f"Restarting dynos on ⬢ {app}... done" in result.stdout


def test_apps_create_without_a_name_makes_one_up(server: RunningServer) -> None:
    result = server.cli("apps:create")
    found = re.search(r"Creating app\.\.\. done, ⬢ ([a-z]+-[a-z]+-[0-9]{5})$", result.stdout, re.M)
    assert found, result.stdout
    assert found[1] in server.cli("apps").stdout


def test_logs_from_the_router_by_dyno_and_a_source_named_router_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path, "web: python3 -m http.server $PORT\n")
    server.scale(app, web=1)
    with server.router(app) as router:
        wait_for(lambda: router.get("/Procfile").status_code == 200, 30, "the web dyno")
    routed = server.cli("logs", "-a", app, "-d", "router").stdout
    assert 'dynos[router]: at=info method=GET path="/Procfile"' in routed
    assert "app[" not in routed
    refused = server.cli("logs", "-a", app, "-s", "router", check=False)
    assert refused.returncode == 1
    assert "Unknown log source 'router'" in refused.stderr
    assert "use -d router" in refused.stderr
    assert "app[api]" in server.cli("logs", "-a", app, "-s", "app").stdout
    assert "dynos[router]" in server.cli("logs", "-a", app, "-s", "heroku").stdout


@pytest.mark.parametrize("name", ["PORT", "DYNO"])
def test_config_set_of_a_var_the_platform_sets_is_refused_and_changes_nothing(
    server: RunningServer, tmp_path: Path, name: str
) -> None:
    app = make_app(server, tmp_path, "worker: sleep 1000\n")
    refused = server.cli("config:set", f"{name}=8000", "OTHER=1", "-a", app, check=False)
    assert refused.returncode == 1
    assert f"{name} cannot be set: the platform sets it in every dyno" in refused.stderr
    with server.api() as api:
        answer = api.patch(f"/apps/{app}/config-vars", json={name: "8000"})
        assert answer.status_code == 422, answer.text
        assert "Nothing was changed" in answer.json()["message"]
        assert api.get(f"/apps/{app}/config-vars").json() == {}
        assert api.patch(f"/apps/{app}/config-vars", json={name: None}).status_code == 200


def test_a_formation_larger_than_the_host_is_scaled_with_a_warning(
    server: RunningServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path, "worker: sleep 1000\n")
    largest = max(SIZES, key=lambda s: s.memory_mb)
    quantity = psutil.virtual_memory().total // (largest.memory_mb * 1024 * 1024) + 1
    try:
        result = server.cli("ps:scale", f"worker={quantity}:{largest.name}", "-a", app)
        assert f"now running worker at {quantity}:{largest.name}" in result.stdout
        assert "Warning: This formation's dynos may use" in result.stderr
        assert "more than this host has" in result.stderr
        with server.api() as api:
            update = {"updates": [{"type": "worker", "quantity": quantity}]}
            answer = api.patch(f"/apps/{app}/formation", json=update)
            assert "more than this host has" in answer.headers["X-Heroku-Warning"]
            small = {"updates": [{"type": "worker", "quantity": 1, "size": "Standard-1X"}]}
            assert "X-Heroku-Warning" not in api.patch(f"/apps/{app}/formation", json=small).headers
    finally:
        server.scale(app, worker=0)


def test_a_web_dyno_whose_port_is_taken_gets_another_when_it_restarts(
    server: RunningServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path, "web: python3 late.py\n", **{"late.py": BIND_LATE})
    server.scale(app, web=1)
    ports: list[int] = []

    def said_port() -> bool:
        ports[:] = [int(p) for p in re.findall(r"\]: port (\d+)$", server.logs(app), re.M)]
        return bool(ports)

    wait_for(said_port, 30, "the dyno's port")
    # Another listener takes the port before the dyno binds it.
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", ports[0]))
        thief.listen()
        wait_for(lambda: "bind failed" in server.logs(app), 30, "the dyno's failed bind")
        wait_for(lambda: said_port() and len(ports) >= 2, 30, "the restart")
        assert ports[1] != ports[0]
        wait_for(lambda: f"bound {ports[1]}" in server.logs(app), 30, "the second bind")
    said = f"dynos[web.1]: Port {ports[0]} was taken by another process: a new one at restart"
    assert said in server.logs(app)


def test_without_a_server_the_cli_names_where_the_homes_last_one_listened(
    tmp_path: Path,
) -> None:
    """Regression: it named http://127.0.0.1:5050 whatever port the home's server had."""
    home = tmp_path / "home"
    running = start_server(home, "--stop-grace", "1")
    url = running.api_url
    assert not url.endswith(":5050")
    running.stop()
    result = running.cli("apps", check=False)
    assert result.returncode == 1
    assert f"no dynos server is running at {url}." in result.stderr
    assert json.loads((home / "server.last.json").read_text())["api_url"] == url
