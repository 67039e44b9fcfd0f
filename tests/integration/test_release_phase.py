"""The release phase against a real server: a Procfile's ``release:`` command runs in a
one-off dyno before its release goes live, for deploys, config changes and rollbacks; a
failure (exit status, timeout, the server's end) keeps the release before serving.

The tests share one server, each with apps of its own; those that stop or kill their server,
or count every release's output in its home, get a server of their own (``own_server``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynos.testing.harness import RunningServer, dyno_states, start_server, tarball, wait_for
from tests.integration.conftest import each_test, started

ENVECHO = Path(__file__).parent / "apps" / "envecho"

RELEASE_PY = """
    import os, sys, time
    print(f"release command in {os.environ.get('DYNO')} MARK={os.environ.get('MARK', '')}",
          flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("RELEASE_SLEEP", "0")))
    print("release command done", flush=True)
    sys.exit(int(os.environ.get("RELEASE_EXIT", "0")))
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from started(tmp_path_factory.mktemp("release-phase") / "home", "--stop-grace", "5")


@pytest.fixture
def server(shared: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared)


def release_app(tmp_path: Path, name: str = "app", exit_status: int = 0) -> Path:
    """envecho with a release phase that says where it ran, sleeps RELEASE_SLEEP and exits
    with RELEASE_EXIT (config vars), or with ``exit_status`` when that is not set."""
    app = tmp_path / name
    shutil.copytree(ENVECHO, app)
    (app / "Procfile").write_text(
        "web: python3 web.py\nworker: python3 worker.py\nrelease: python3 release.py\n"
    )
    script = textwrap.dedent(RELEASE_PY).replace(
        '"RELEASE_EXIT", "0"', f'"RELEASE_EXIT", "{exit_status}"'
    )
    (app / "release.py").write_text(script)
    return app


def get(server: RunningServer, path: str) -> Any:
    with server.api() as api:
        response = api.get(path)
    response.raise_for_status()
    return response.json()


def release(server: RunningServer, app: str, version: int) -> dict[str, Any]:
    return get(server, f"/apps/{app}/releases/{version}")  # type: ignore[no-any-return]


def deploy_lines(server: RunningServer, app: str, directory: Path) -> list[dict[str, Any]]:
    return server.deploy_lines(app, directory, timeout=120)


def web_release(server: RunningServer, app: str) -> int:
    dynos = {d["name"]: d for d in get(server, f"/apps/{app}/dynos")}
    return dynos["web.1"]["release"]["version"]  # type: ignore[no-any-return]


def serving(server: RunningServer, app: str) -> dict[str, Any]:
    with server.router(app) as client:
        response = client.get("/")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def web_up_on(server: RunningServer, app: str, version: int) -> None:
    def up_on_it() -> bool:
        states = dyno_states(server, app)
        return states.get("web.1") == "up" and web_release(server, app) == version

    # A replacement stops the old dyno, then boots the new one: under a loaded CI run (two
    # xdist workers on two cores) this once took longer than 30 s, so the wait is generous.
    wait_for(up_on_it, timeout=90.0, what=f"{app}'s web.1 up on v{version}")


def settled(server: RunningServer, app: str, version: int) -> dict[str, Any]:
    wait_for(
        lambda: release(server, app, version)["status"] != "pending",
        timeout=60,
        what=f"v{version}'s release phase to end",
    )
    return release(server, app, version)


def test_deploy_runs_the_release_command_before_the_release_goes_live(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("phase")
    server.cli("config:set", "MARK=first", "RELEASE_SLEEP=1", "-a", "phase")  # v2, no code
    app = release_app(tmp_path)
    seen: dict[str, Any] = {}
    with (
        server.api() as api,
        api.stream(
            "POST",
            "/apps/phase/deploys",
            content=tarball(app),
            headers={"Content-Type": "application/gzip"},
            timeout=120,
        ) as response,
    ):
        events = []
        for line in response.iter_lines():
            event = json.loads(line)
            events.append(event)
            if "release command in" in event.get("output", "") and not seen:
                # The command runs: its release is pending, no web dyno runs yet, and its
                # one-off dyno is listed, outside the formation.
                seen["release"] = release(server, "phase", 3)
                seen["states"] = dyno_states(server, "phase")
                seen["formation"] = get(server, "/apps/phase/formation")
    assert seen["release"]["status"] == "pending"
    assert seen["release"]["current"] is False
    assert seen["release"]["output_stream_url"]
    assert [name.split(".")[0] for name in seen["states"]] == ["release"]
    assert seen["formation"] == []
    output = [e["output"] for e in events if "output" in e]
    assert "-----> Running release command: python3 release.py" in output
    assert any(line.strip().startswith("release command in release.") for line in output)
    assert "       a line on stderr" in output
    assert "       release command done" in output
    final = events[-1]["release"]
    assert final["version"] == 3 and final["status"] == "succeeded" and final["current"]
    web_up_on(server, "phase", 3)
    assert serving(server, "phase")["env"]["MARK"] == "first"
    # release is the phase's command: never in the formation, never scaled.
    assert {f["type"] for f in get(server, "/apps/phase/formation")} == {"web", "worker"}
    refused = server.cli("ps:scale", "release=1", "-a", "phase", check=False)
    assert refused.returncode == 1
    assert "release is the release phase's command" in refused.stderr
    # Its output stays readable, with the dynos CLI.
    shown = server.cli("releases:output", "v3", "-a", "phase").stdout.splitlines()
    assert shown[0].startswith("release command in release.") and shown[0].endswith("MARK=first")
    assert shown[1:] == ["a line on stderr", "release command done"]
    assert server.cli("releases:output", "-a", "phase").stdout.splitlines() == shown
    # A release without a release phase says so.
    none = server.cli("releases:output", "v2", "-a", "phase")
    assert "Release v2 has no release command output" in none.stderr
    # And the app's log has it under the one-off dyno's name.
    assert "]: release command done" in server.logs("phase")


def test_a_failed_release_phase_keeps_the_previous_release_serving(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("failing")
    server.deploy("failing", release_app(tmp_path, "good"))  # v2
    web_up_on(server, "failing", 2)
    before = {d["name"]: d["id"] for d in get(server, "/apps/failing/dynos")}
    result = server.cli(
        "deploy", "-a", "failing", str(release_app(tmp_path, "bad", 3)), check=False
    )
    assert result.returncode == 1
    assert "Running release command: python3 release.py" in result.stdout
    assert "Release command exited with status 3." in result.stdout
    assert "Released v3" not in result.stdout
    error = " ".join(result.stderr.split())
    assert "Release v3 failed: Release command exited with status 3." in error
    assert "v2 keeps serving" in error
    assert "dynos releases:output v3 -a failing" in error
    v3 = release(server, "failing", 3)
    assert v3["status"] == "failed" and v3["current"] is False
    assert v3["eligible_for_rollback"] is False
    assert release(server, "failing", 2)["current"] is True
    # The web dyno was never replaced: v2 serves on.
    assert {d["name"]: d["id"] for d in get(server, "/apps/failing/dynos")} == before
    assert web_release(server, "failing") == 2
    serving(server, "failing")
    output = server.cli("releases:output", "v3", "-a", "failing").stdout
    assert output.splitlines()[-1] == "Release command exited with status 3."
    listed = server.cli("releases", "-a", "failing").stdout
    assert "Current: v2" in listed and "release command failed" in listed
    assert "Release v3 command failed" in server.logs("failing")
    # A good deploy after it goes live.
    server.deploy("failing", release_app(tmp_path, "fixed"))
    web_up_on(server, "failing", 4)


def test_config_changes_and_rollbacks_run_the_release_phase(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("triggers")
    server.deploy("triggers", release_app(tmp_path))  # v2
    web_up_on(server, "triggers", 2)
    # A config change whose release command fails: the change never goes live.
    server.cli("config:set", "RELEASE_EXIT=1", "MARK=broken", "-a", "triggers")  # v3
    v3 = settled(server, "triggers", 3)
    assert v3["status"] == "failed"
    assert "MARK" not in get(server, "/apps/triggers/config-vars")
    assert web_release(server, "triggers") == 2
    with httpx.Client(timeout=30) as plain:  # the output URL is its own credential
        text = plain.get(v3["output_stream_url"]).text
    assert "MARK=broken" in text and text.endswith("Release command exited with status 1.\n")
    # One that succeeds: the dynos restart on it.
    server.cli("config:set", "MARK=second", "-a", "triggers")  # v4
    assert settled(server, "triggers", 4)["status"] == "succeeded"
    web_up_on(server, "triggers", 4)
    assert serving(server, "triggers")["env"]["MARK"] == "second"
    assert "MARK=second" in server.cli("releases:output", "v4", "-a", "triggers").stdout
    # A rollback runs it too, with the target's config.
    with server.api() as api:
        rolled = api.post("/apps/triggers/releases", json={"release": "2"})
    assert rolled.status_code == 201, rolled.text
    assert rolled.json()["version"] == 5 and rolled.json()["status"] == "pending"
    assert settled(server, "triggers", 5)["status"] == "succeeded"
    web_up_on(server, "triggers", 5)
    assert "MARK" not in serving(server, "triggers")["env"]
    assert "MARK=\n" in server.cli("releases:output", "v5", "-a", "triggers").stdout


def test_no_release_is_made_while_a_release_command_runs(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("busy")
    server.deploy("busy", release_app(tmp_path))  # v2
    server.cli("config:set", "RELEASE_SLEEP=30", "-a", "busy")  # v3, pending for 30 s
    wait_for(lambda: release(server, "busy", 3)["status"] == "pending", what="v3 pending")
    refused = server.cli("config:set", "OTHER=1", "-a", "busy", check=False)
    assert refused.returncode == 1
    assert "The release command of v3 is still running" in refused.stderr
    deploy = server.cli("deploy", "-a", "busy", str(release_app(tmp_path, "next")), check=False)
    assert deploy.returncode == 1 and "v3 is still running" in deploy.stderr
    with server.api() as api:  # refused before the upload is read or anything built
        response = api.post(
            "/apps/busy/deploys",
            content=tarball(release_app(tmp_path, "third")),
            headers={"Content-Type": "application/gzip"},
        )
    assert response.status_code == 409 and response.json()["id"] == "conflict"
    assert [r["version"] for r in get(server, "/apps/busy/releases")] == [1, 2, 3]
    # Stopping the release dyno fails its release, as Heroku's dyno manager does.
    name = next(n for n in dyno_states(server, "busy") if n.startswith("release."))
    server.cli("ps:stop", name, "-a", "busy")
    assert settled(server, "busy", 3)["status"] == "failed"
    assert "OTHER" not in get(server, "/apps/busy/config-vars")


def test_a_release_command_past_the_release_timeout_fails(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", "--stop-grace", "2", "--release-timeout", "2")
    try:
        server.create_app("slow")
        server.cli("config:set", "RELEASE_SLEEP=600", "-a", "slow")
        lines = deploy_lines(server, "slow", release_app(tmp_path))
        error = lines[-1]["error"]
        assert error["id"] == "release_failed"
        assert (
            "Release command timed out after 2 seconds (the server's --release-timeout)"
            in (error["message"])
        )
        assert "nothing was released" in error["message"]
        assert release(server, "slow", 3)["status"] == "failed"
        assert dyno_states(server, "slow") == {}
    finally:
        server.stop()


def test_a_release_cut_off_by_the_servers_death_fails_at_the_next_start(
    own_server: RunningServer, tmp_path: Path
) -> None:
    server = own_server  # stopped, killed or its home's every output counted
    home = server.home
    server.create_app("cutoff")
    server.deploy("cutoff", release_app(tmp_path))  # v2
    web_up_on(server, "cutoff", 2)
    server.cli("config:set", "RELEASE_SLEEP=600", "MARK=cut", "-a", "cutoff")  # v3
    url = release(server, "cutoff", 3)["output_stream_url"]

    def release_dyno_running() -> bool:
        return any(n.startswith("release.") for n in dyno_states(server, "cutoff"))

    wait_for(release_dyno_running, what="the release dyno")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)
    again = start_server(home, "--stop-grace", "2")
    try:
        v3 = release(again, "cutoff", 3)
        assert v3["status"] == "failed"
        assert release(again, "cutoff", 2)["current"] is True
        web_up_on(again, "cutoff", 2)
        assert "MARK" not in serving(again, "cutoff")["env"]
        output = again.cli("releases:output", "v3", "-a", "cutoff").stdout
        assert "MARK=cut" in output
        assert output.splitlines()[-1] == (
            "The dynos server stopped while the release command was running."
        )
        # Its URL kept its key: the heroku CLI's old link still reads it from the new server.
        key = url.rsplit("/", 1)[1]
        assert v3["output_stream_url"].endswith("/release-output/" + key)
        # New releases can be made again.
        again.cli("config:set", "MARK=after", "-a", "cutoff")
        assert settled(again, "cutoff", 4)["status"] == "succeeded"
    finally:
        again.stop()


def test_a_release_command_running_when_the_server_stops_fails(
    own_server: RunningServer, tmp_path: Path
) -> None:
    server = own_server  # stopped, killed or its home's every output counted
    home = server.home
    server.create_app("stopped")
    server.deploy("stopped", release_app(tmp_path))  # v2
    server.cli("config:set", "RELEASE_SLEEP=600", "-a", "stopped")  # v3
    wait_for(
        lambda: any(n.startswith("release.") for n in dyno_states(server, "stopped")),
        what="the release dyno",
    )
    url = release(server, "stopped", 3)["output_stream_url"]
    received: list[str] = []

    def follow() -> None:  # a client following the output: its stream ends with the server
        with httpx.Client(timeout=60) as plain, plain.stream("GET", url) as response:
            received.extend(response.iter_lines())

    reader = threading.Thread(target=follow)
    reader.start()
    wait_for(lambda: received, what="the follower's first line")
    assert server.stop() == 0
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert received[0].startswith("release command in release.")
    again = start_server(home, "--stop-grace", "2")
    try:
        assert release(again, "stopped", 3)["status"] == "failed"
        output = again.cli("releases:output", "v3", "-a", "stopped").stdout
        assert output.splitlines()[-1] == (
            "The dynos server stopped while the release command was running."
        )
        assert output.count("The dynos server stopped") == 1
    finally:
        again.stop()


def test_output_urls_need_their_key(server: RunningServer, tmp_path: Path) -> None:
    server.create_app("keyed")
    server.deploy("keyed", release_app(tmp_path))
    url = release(server, "keyed", 2)["output_stream_url"]
    base, key = url.rsplit("/", 1)
    with httpx.Client(timeout=30) as plain:
        assert plain.get(url).status_code == 200
        wrong = plain.get(f"{base}/{key[:-2]}xy")
        assert wrong.status_code == 404 and wrong.json()["id"] == "not_found"
        # The rest of the API still wants the token.
        assert plain.get(url.split("/release-output/")[0] + "/apps").status_code == 401
    assert os.path.basename(url) == key


def test_destroying_an_app_during_its_release_phase_leaves_nothing(
    own_server: RunningServer, tmp_path: Path
) -> None:
    server = own_server  # stopped, killed or its home's every output counted
    server.create_app("doomed")
    server.deploy("doomed", release_app(tmp_path))  # v2
    server.cli("config:set", "RELEASE_SLEEP=600", "-a", "doomed")  # v3
    wait_for(
        lambda: any(n.startswith("release.") for n in dyno_states(server, "doomed")),
        what="the release dyno",
    )
    outputs = server.home / "release-output"
    assert len(list(outputs.iterdir())) == 2
    server.cli("apps:destroy", "doomed", "--confirm", "doomed")
    wait_for(lambda: not list(outputs.iterdir()), timeout=10, what="the output files removed")
    server.create_app("doomed")  # the name is free, and the new app has no pending release
    server.deploy("doomed", release_app(tmp_path, "again"))
    assert release(server, "doomed", 2)["status"] == "succeeded"
    assert len(list(outputs.iterdir())) == 1


def test_a_quiet_release_command_keeps_the_deploy_stream_alive(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("quiet")
    server.cli("config:set", "RELEASE_SLEEP=22", "-a", "quiet")
    with server.api() as api:
        response = api.post(
            "/apps/quiet/deploys",
            content=tarball(release_app(tmp_path)),
            headers={"Content-Type": "application/gzip"},
            timeout=120,
        )
    lines = response.text.split("\n")
    assert "" in lines[:-1], "\n".join(
        lines
    )  # a blank line after 20 s of silence (the last is the final \n)
    assert json.loads(lines[-2])["release"]["status"] == "succeeded"
    result = server.cli("releases", "-a", "quiet")
    assert "Current: v3" in result.stdout
