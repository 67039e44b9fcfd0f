"""The real heroku CLI and the release phase: ``releases:output`` and ``rollback`` read a
release command's output from ``output_stream_url`` (without the API's token), ``releases``
marks a failed release, and ``ps:scale release=...`` is refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dynos.testing.harness import RunningServer, wait_for
from tests.heroku.conftest import Heroku

pytestmark = pytest.mark.timeout(600)

ENVECHO = Path(__file__).parents[1] / "integration" / "apps" / "envecho"
APP = "herokuphase"
RELEASE_PY = (
    "import os, sys\n"
    "print('migrating with MARK=' + os.environ.get('MARK', ''), flush=True)\n"
    "sys.exit(int(os.environ.get('RELEASE_EXIT', '0')))\n"
)


def get(server: RunningServer, path: str) -> Any:
    with server.api() as api:
        response = api.get(path)
    response.raise_for_status()
    return response.json()


def settled(server: RunningServer, version: int) -> str:
    def status() -> str:
        return str(get(server, f"/apps/{APP}/releases/{version}")["status"])

    wait_for(lambda: status() != "pending", what=f"v{version}'s release phase to end")
    return status()


def test_releases_output_prints_the_release_commands_output(
    heroku: Heroku, server: RunningServer, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    shutil.copytree(ENVECHO, app)
    (app / "Procfile").write_text("web: python3 web.py\nrelease: python3 release.py\n")
    (app / "release.py").write_text(RELEASE_PY)
    heroku("apps:create", APP)
    server.deploy(APP, app)  # v2
    assert heroku("releases:output", "-a", APP).stdout == "migrating with MARK=\n"
    assert heroku("releases:output", "v2", "-a", APP).stdout == "migrating with MARK=\n"
    no_output = heroku("releases:output", "v1", "-a", APP)
    assert "Release v1 has no release output available." in no_output.stderr


def test_releases_marks_a_release_whose_command_failed(
    heroku: Heroku, server: RunningServer
) -> None:
    heroku("config:set", "RELEASE_EXIT=1", "MARK=bad", "-a", APP)  # v3
    assert settled(server, 3) == "failed"
    listed = heroku("releases", "-a", APP).stdout
    assert "Releases - Current: v2" in listed
    [v3] = [line.strip() for line in listed.splitlines() if line.strip().startswith("v3 ")]
    assert "Set RELEASE_EXIT, MARK config vars release command failed" in v3
    assert heroku("releases:output", "v3", "-a", APP).stdout == (
        "migrating with MARK=bad\nRelease command exited with status 1.\n"
    )
    assert get(server, f"/apps/{APP}/config-vars") == {}  # the change never went live


def test_rollback_streams_the_release_command(heroku: Heroku, server: RunningServer) -> None:
    heroku("config:set", "MARK=good", "-a", APP)  # v4
    assert settled(server, 4) == "succeeded"
    result = heroku("rollback", "v2", "-a", APP)  # v5
    assert "Rolling back herokuphase to v2... done, v5" in result.stderr
    assert result.stdout == "Running release command...\nmigrating with MARK=\n"
    assert settled(server, 5) == "succeeded"
    assert get(server, f"/apps/{APP}/config-vars") == {}


def test_ps_scale_refuses_the_release_type(heroku: Heroku, server: RunningServer) -> None:
    refused = heroku("ps:scale", "release=1", "-a", APP, check=False)
    assert refused.returncode != 0
    assert "release phase's command" in " ".join(refused.stderr.split())
    assert [f["type"] for f in get(server, f"/apps/{APP}/formation")] == ["web"]
