"""The real heroku CLI drives dynos: every command of issue 5, against a real server.

The tests run in file order on one app, as a user's session would: create, deploy (with the
dynos API: Heroku has no upload deploy), look, scale, resize, restart, configure, release,
roll back, read logs, run, destroy. Each checks what the CLI prints (stdout, and stderr for
its "Doing X... done" lines) and what the platform then holds, through the API.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dynos.testing.harness import RunningServer, dyno_states, wait_for
from tests.heroku.conftest import Heroku

# The first test also waits for the one-time npm install of the CLI (about a minute).
pytestmark = pytest.mark.timeout(600)

ENVECHO = Path(__file__).parents[1] / "integration" / "apps" / "envecho"
APP = "herokudemo"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 (app|dynos)\[[\w.]+\]: ")


def get(server: RunningServer, path: str) -> Any:
    with server.api() as api:
        response = api.get(path)
    response.raise_for_status()
    return response.json()


def formation(server: RunningServer) -> dict[str, tuple[int, str]]:
    return {f["type"]: (f["quantity"], f["size"]) for f in get(server, f"/apps/{APP}/formation")}


def dyno_ids(server: RunningServer) -> dict[str, str]:
    return {d["name"]: d["id"] for d in get(server, f"/apps/{APP}/dynos")}


def all_up(server: RunningServer, names: set[str]) -> bool:
    states = dyno_states(server, APP)
    return set(states) == names and set(states.values()) == {"up"}


def wait_all_up(server: RunningServer, *names: str) -> None:
    wait_for(lambda: all_up(server, set(names)), what=f"exactly {', '.join(names)} up")


def wait_replaced(server: RunningServer, before: dict[str, str], *names: str) -> None:
    def replaced() -> bool:
        now = dyno_ids(server)
        return all(n in now and now[n] != before[n] for n in names) and all_up(server, set(before))

    wait_for(replaced, what=f"{', '.join(names)} replaced by new dynos")


def log_lines(output: str) -> list[str]:
    lines = output.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), lines
    return lines


# -- apps -----------------------------------------------------------------------------------------


def test_apps_create_makes_the_app(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("apps:create", APP)
    assert f"Creating {APP}... done" in result.stderr
    assert result.stdout.startswith(f"https://{APP}.localhost:{server.https_port}/ | ")
    assert get(server, f"/apps/{APP}")["name"] == APP


def test_deployed_app_runs_one_web_dyno(server: RunningServer) -> None:
    server.deploy(APP, ENVECHO)
    wait_all_up(server, "web.1")


def test_apps_lists_the_users_apps(heroku: Heroku, server: RunningServer) -> None:
    email = get(server, "/account")["email"]
    assert heroku("apps").stdout.splitlines() == [f"=== {email} Apps", "", f"{APP} (local)"]


def test_apps_info_shows_the_app(heroku: Heroku, server: RunningServer) -> None:
    out = heroku("apps:info", "-a", APP).stdout
    assert out.startswith(f"=== {APP}\n")
    assert f"Web URL:        https://{APP}.localhost:{server.https_port}/" in out
    assert "Dynos:          web: 1" in out
    assert "Region:         local" in out


def test_apps_info_of_an_unknown_app_fails_with_herokus_error_id(heroku: Heroku) -> None:
    result = heroku("apps:info", "-a", "nope", check=False)
    assert result.returncode != 0
    assert "Couldn't find that app: nope" in result.stderr
    assert "Error ID: not_found" in result.stderr


def test_wrong_api_key_is_reported_as_an_invalid_token(heroku: Heroku) -> None:
    result = heroku("apps", check=False, api_key="not-the-token")
    assert result.returncode != 0
    assert "The token provided to HEROKU_API_KEY is invalid" in result.stderr


# -- ps -------------------------------------------------------------------------------------------


def test_ps_lists_the_dynos(heroku: Heroku) -> None:
    out = heroku("ps", "-a", APP).stdout
    assert out.startswith("=== web (Standard-1X): python3 web.py (1)\n\nweb.1: up ")


def test_ps_scale_sets_several_types_with_a_size(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("ps:scale", "web=2:standard-2x", "worker=1", "-a", APP)
    assert "done, now running web at 2:Standard-2X, worker at 1:Standard-1X" in result.stderr
    assert formation(server) == {"web": (2, "Standard-2X"), "worker": (1, "Standard-1X")}
    wait_all_up(server, "web.1", "web.2", "worker.1")


def test_ps_scale_adds_relatively(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("ps:scale", "web+1", "-a", APP)
    assert "done, now running web at 3:Standard-2X" in result.stderr
    wait_all_up(server, "web.1", "web.2", "web.3", "worker.1")
    heroku("ps:scale", "web-2", "-a", APP)
    assert formation(server)["web"] == (1, "Standard-2X")
    wait_all_up(server, "web.1", "worker.1")


def test_ps_scale_without_arguments_prints_the_formation(heroku: Heroku) -> None:
    out = heroku("ps:scale", "-a", APP).stdout
    assert out.strip() == "web=1:Standard-2X worker=1:Standard-1X"


def test_ps_type_resizes_one_type(heroku: Heroku, server: RunningServer) -> None:
    out = heroku("ps:type", "worker=standard-2x", "-a", APP).stdout
    assert re.search(r"worker\s+Standard-2X\s+1\s", out), out
    assert formation(server)["worker"] == (1, "Standard-2X")


def test_ps_resize_resizes_every_type(heroku: Heroku, server: RunningServer) -> None:
    out = heroku("ps:resize", "standard-1x", "-a", APP).stdout
    assert "=== Dyno Totals" in out
    assert re.search(r"Standard-1X\s+2\s", out), out
    assert formation(server) == {"web": (1, "Standard-1X"), "worker": (1, "Standard-1X")}
    wait_for(
        lambda: (
            {d["size"] for d in get(server, f"/apps/{APP}/dynos")} == {"Standard-1X"}
            and all_up(server, {"web.1", "worker.1"})
        ),
        what="dynos restarted at Standard-1X",
    )


def test_ps_autoscale_enable_refuses_itself_on_dynos_that_are_not_performance(
    heroku: Heroku,
) -> None:
    """The heroku CLI checks the web size itself, from the formation this server answers
    (dynos's own ps:autoscale:enable allows every size)."""
    result = heroku(
        *("ps:autoscale:enable", "--min", "1", "--max", "2", "--p95", "500", "-a", APP),
        check=False,
    )
    assert result.returncode != 0
    assert "only available with Performance or Private dynos" in result.stderr, result


def test_ps_restart_restarts_every_dyno(heroku: Heroku, server: RunningServer) -> None:
    before = dyno_ids(server)
    assert f"Restarting all dynos on {APP}... done" in heroku("ps:restart", "-a", APP).stderr
    wait_replaced(server, before, "web.1", "worker.1")


def test_ps_restart_restarts_one_type(heroku: Heroku, server: RunningServer) -> None:
    before = dyno_ids(server)
    result = heroku("ps:restart", "-p", "worker", "-a", APP)
    assert f"Restarting all worker dynos on {APP}... done" in result.stderr
    wait_replaced(server, before, "worker.1")
    assert dyno_ids(server)["web.1"] == before["web.1"]


def test_ps_restart_restarts_one_dyno(heroku: Heroku, server: RunningServer) -> None:
    before = dyno_ids(server)
    result = heroku("ps:restart", "web.1", "-a", APP)  # the CLI's older TYPE|DYNO argument
    assert f"Restarting dyno web.1 on {APP}... done" in result.stderr
    wait_replaced(server, before, "web.1")
    assert dyno_ids(server)["worker.1"] == before["worker.1"]


def test_ps_stop_stops_a_dyno_that_its_formation_starts_again(
    heroku: Heroku, server: RunningServer
) -> None:
    before = dyno_ids(server)
    assert "Stopping dyno worker.1" in heroku("ps:stop", "worker.1", "-a", APP).stderr
    wait_replaced(server, before, "worker.1")


def test_ps_stop_stops_a_type(heroku: Heroku, server: RunningServer) -> None:
    before = dyno_ids(server)
    result = heroku("ps:stop", "-p", "web", "-a", APP)
    assert f"Stopping all web dynos on {APP}... done" in result.stderr
    wait_replaced(server, before, "web.1")


def test_ps_kill_stops_a_dyno(heroku: Heroku, server: RunningServer) -> None:
    before = dyno_ids(server)
    assert "Stopping dyno web.1" in heroku("ps:kill", "-d", "web.1", "-a", APP).stderr
    wait_replaced(server, before, "web.1")


# -- config ---------------------------------------------------------------------------------------


def routed_env(server: RunningServer) -> dict[str, str]:
    """The environment a web dyno answers with ({} while none can answer: a restart)."""
    with server.router(APP) as router:
        response = router.get("/")
    if response.status_code != 200:
        return {}
    env: dict[str, str] = response.json()["env"]
    return env


def test_config_set_creates_a_release_the_dynos_run(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("config:set", "GREETING=hi", "MSG=hello world", "-a", APP)
    assert f"Setting GREETING, MSG and restarting {APP}... done, v3" in result.stderr
    assert result.stdout.splitlines() == ["GREETING: hi", "MSG:      hello world"]
    wait_for(lambda: routed_env(server).get("MSG") == "hello world", what="dynos on v3")


def test_config_lists_the_vars(heroku: Heroku) -> None:
    assert heroku("config", "-a", APP).stdout.splitlines() == [
        f"=== {APP} Config Vars",
        "",
        "GREETING: hi",
        "MSG:      hello world",
    ]


def test_config_get_prints_one_value(heroku: Heroku) -> None:
    assert heroku("config:get", "MSG", "-a", APP).stdout == "hello world\n"


def test_config_unset_removes_a_var(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("config:unset", "MSG", "-a", APP)
    assert f"Unsetting MSG and restarting {APP}... done, v4" in result.stderr
    assert get(server, f"/apps/{APP}/config-vars") == {"GREETING": "hi"}


# -- releases and rollback ------------------------------------------------------------------------


def test_releases_lists_newest_first(heroku: Heroku, server: RunningServer) -> None:
    email = get(server, "/account")["email"]
    lines = heroku("releases", "-a", APP).stdout.splitlines()
    assert lines[0] == f"=== {APP} Releases - Current: v4"
    rows = [line.strip() for line in lines if re.match(r"^\s+v\d", line)]
    assert [row.split()[0] for row in rows] == ["v4", "v3", "v2", "v1"]
    assert re.match(rf"^v4\s+Remove MSG config vars\s+{re.escape(email)}\s+\d{{4}}/", rows[0])
    assert re.match(r"^v1\s+Initial release\s", rows[3])


def test_releases_info_shows_a_release_and_its_config(heroku: Heroku) -> None:
    out = heroku("releases:info", "v3", "-a", APP).stdout
    assert out.startswith("=== Release v3\n")
    assert "Change:                 Set GREETING, MSG config vars" in out
    assert "=== v3 Config vars\n\nGREETING: hi\nMSG:      hello world" in out


def test_rollback_goes_back_to_the_previous_release(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("rollback", "-a", APP)
    assert f"Rolling back {APP} to v3... done, v5" in result.stderr
    assert "To undo, run: heroku rollback v4" in result.stderr
    release = get(server, f"/apps/{APP}/releases/5")
    assert (release["description"], release["current"]) == ("Rollback to v3", True)
    assert get(server, f"/apps/{APP}/config-vars") == {"GREETING": "hi", "MSG": "hello world"}
    wait_for(lambda: routed_env(server).get("MSG") == "hello world", what="dynos on v5")


def test_rollback_to_a_named_version(heroku: Heroku, server: RunningServer) -> None:
    assert "to v2... done, v6" in heroku("rollback", "v2", "-a", APP).stderr
    assert get(server, f"/apps/{APP}/config-vars") == {}
    assert formation(server) == {"web": (1, "Standard-1X"), "worker": (1, "Standard-1X")}
    wait_for(lambda: "GREETING" not in routed_env(server), what="dynos on v6")
    wait_all_up(server, "web.1", "worker.1")


# -- logs -----------------------------------------------------------------------------------------


def test_logs_prints_the_last_n_lines(heroku: Heroku) -> None:
    lines = log_lines(heroku("logs", "-n", "5", "-a", APP).stdout)
    assert len(lines) == 5


def test_logs_filters_by_process_type(heroku: Heroku) -> None:
    lines = log_lines(heroku("logs", "-p", "worker", "-a", APP).stdout)
    assert lines and all("[worker." in line for line in lines)


def test_logs_filters_by_dyno(heroku: Heroku) -> None:
    lines = log_lines(heroku("logs", "-d", "web.1", "-a", APP).stdout)
    assert any("app[web.1]: booting web.1" in line for line in lines)
    assert all("[web.1]" in line for line in lines)


def test_logs_filters_by_source(heroku: Heroku) -> None:
    platform = log_lines(heroku("logs", "-s", "heroku", "-a", APP).stdout)
    assert platform and all(" dynos[" in line for line in platform)
    app = log_lines(heroku("logs", "-s", "app", "-a", APP).stdout)
    assert any("app[api]: Rollback to v2 by user" in line for line in app)
    assert all(" app[" in line for line in app)


def test_logs_tail_follows_new_lines(heroku: Heroku, server: RunningServer) -> None:
    lines: queue.Queue[str] = queue.Queue()
    with heroku.popen("logs", "--tail", "-n", "1", "-a", APP) as tail:
        assert tail.stdout is not None
        stdout = tail.stdout
        reader = threading.Thread(target=lambda: [lines.put(line) for line in stdout])
        reader.start()
        try:
            lines.get(timeout=30)  # the backlog's line: the stream is open
            with server.router(APP) as router:
                router.get("/tailed")
            deadline = time.monotonic() + 30
            seen = ""
            while "/tailed" not in seen:
                seen = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert LOG_LINE.match(seen)
        finally:
            tail.terminate()
            tail.wait(timeout=10)
            reader.join(timeout=10)


# -- run:detached ---------------------------------------------------------------------------------


def require_one_off_dynos(server: RunningServer) -> None:
    with server.api() as api:
        probe = api.post(f"/apps/{APP}/dynos", json={})
    if probe.status_code == 405:
        pytest.skip("POST /apps/{app}/dynos (one-off dynos, issue 6) is not mounted yet")


def run_detached(heroku: Heroku, command: str) -> str:
    """``heroku run:detached COMMAND``; the one-off dyno's name it reports."""
    result = heroku("run:detached", command, "-a", APP)
    assert f"Running {command} on {APP}... done, run." in result.stderr
    match = re.search(r"--dyno (run\.\d+) to view the output", result.stdout)
    assert match, result.stdout
    return match[1]


def test_run_detached_runs_a_one_off_dyno_into_the_logs(
    heroku: Heroku, server: RunningServer
) -> None:
    require_one_off_dynos(server)
    dyno = run_detached(heroku, "echo one-off says hi")

    def said_hi() -> bool:
        out = heroku("logs", "-d", dyno, "-a", APP).stdout
        return f"app[{dyno}]: one-off says hi" in out

    wait_for(said_hi, what=f"{dyno}'s output in the logs")


def test_ps_stop_stops_a_one_off_dyno_for_good(heroku: Heroku, server: RunningServer) -> None:
    require_one_off_dynos(server)
    dyno = run_detached(heroku, "sleep 300")
    wait_for(lambda: dyno_states(server, APP).get(dyno) == "up", what=f"{dyno} up")
    assert (
        f"=== run: one-off processes (1)\n\n{dyno} (Standard-1X): up "
        in heroku("ps", "-a", APP).stdout
    )
    assert (
        f"Stopping all run dynos on {APP}... done"
        in heroku("ps:stop", "-p", "run", "-a", APP).stderr
    )
    wait_for(lambda: dyno not in dyno_states(server, APP), what=f"{dyno} gone")


# -- destroy --------------------------------------------------------------------------------------


def test_apps_destroy_removes_the_app_and_its_dynos(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("apps:destroy", APP, "--confirm", APP)
    assert f"Destroying {APP} (including all add-ons)... done" in result.stderr
    with server.api() as api:
        assert api.get(f"/apps/{APP}").status_code == 404
    assert heroku("apps").stdout.strip() == "You have no apps."
