"""The real heroku CLI's ``features``, ``features:info``, ``features:enable`` and
``features:disable`` against a real server: preboot switched on from the CLI Heroku users
have, and a ``heroku config:set`` then preboots the web dynos."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, wait_for, wait_for_dynos
from tests.heroku.conftest import Heroku

pytestmark = pytest.mark.timeout(600)

APP_DIR = Path(__file__).parents[1] / "integration" / "apps" / "preboot"
APP = "herokupreboot"


def test_features_lists_preboot_off(heroku: Heroku, server: RunningServer) -> None:
    server.create_app(APP)
    server.deploy(APP, APP_DIR)
    wait_for_dynos(server, APP, {"web.1": "up"})
    listed = heroku("features", "-a", APP)
    assert f"=== App Features {APP}" in listed.stdout
    assert "[ ] preboot  Provide seamless web dyno deploys" in listed.stdout


def test_features_enable_preboot(heroku: Heroku, server: RunningServer) -> None:
    enabled = heroku("features:enable", "preboot", "-a", APP)
    assert f"Enabling preboot for {APP}... done" in enabled.stderr
    assert "[+] preboot" in heroku("features", "-a", APP).stdout
    again = heroku("features:enable", "preboot", "-a", APP, check=False)
    assert again.returncode != 0 and "preboot is already enabled." in again.stderr
    info = heroku("features:info", "preboot", "-a", APP)
    assert "Docs:        https://devcenter.heroku.com/articles/preboot" in info.stdout
    assert "Enabled:     true" in info.stdout


def test_a_config_change_then_preboots_the_web_dynos(heroku: Heroku, server: RunningServer) -> None:
    heroku("config:set", "VERSION=2", "-a", APP)
    wait_for(
        lambda: "Preboot: every new web dyno passed: switched" in server.logs(APP),
        timeout=60,
        what="the preboot's switch",
    )
    wait_for_dynos(server, APP, {"web.1": "up"})


def test_features_disable_preboot(heroku: Heroku, server: RunningServer) -> None:
    disabled = heroku("features:disable", "preboot", "-a", APP)
    assert f"Disabling preboot for {APP}... done" in disabled.stderr
    assert "[ ] preboot" in heroku("features", "-a", APP).stdout
    unknown = heroku("features:info", "no-such-feature", "-a", APP, check=False)
    assert unknown.returncode != 0 and "Couldn't find that feature" in unknown.stderr


def test_labs_enable_log_runtime_metrics(heroku: Heroku, server: RunningServer) -> None:
    """The heroku CLI's labs:enable asks /account/features first (404 here: no account
    features), then the app's: the app feature turns on and its dynos log Heroku's lines."""
    enabled = heroku("labs:enable", "log-runtime-metrics", "-a", APP)
    assert f"Enabling log-runtime-metrics for {APP}... done" in enabled.stderr
    info = heroku("features:info", "log-runtime-metrics", "-a", APP)
    assert "Enabled:     true" in info.stdout
    wait_for(
        lambda: "sample#memory_rss=" in server.logs(APP),
        timeout=60,  # every 20 s, the server's default
        what="a log-runtime-metrics line",
    )
    disabled = heroku("labs:disable", "log-runtime-metrics", "-a", APP)
    assert f"Disabling log-runtime-metrics for {APP}... done" in disabled.stderr
