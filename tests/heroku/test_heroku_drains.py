"""The real heroku CLI's ``drains``, ``drains:add`` and ``drains:remove`` against a real
server (the Platform API's log-drains), by URL and by token, and a refused URL's message."""

from __future__ import annotations

import json
import re

import pytest

from dynos.testing.harness import RunningServer
from tests.heroku.conftest import Heroku

pytestmark = pytest.mark.timeout(300)

APP = "herokudrains"
HTTPS = "https://user:secret@logs.example.com/drain?source=dynos"
SYSLOG = "syslog+tls://logs.example.com:6514"


def said(stderr: str) -> str:
    """The CLI's error message on one line (it wraps and marks each line with U+203A)."""
    return " ".join(stderr.replace("\u203a", " ").split())


def test_drains_add_and_list(heroku: Heroku, server: RunningServer) -> None:
    server.create_app(APP)
    added = heroku("drains:add", HTTPS, "-a", APP)
    assert f"Successfully added drain {HTTPS}" in added.stdout
    heroku("drains:add", SYSLOG, "-a", APP)
    listed = heroku("drains", "-a", APP).stdout.splitlines()
    assert listed[0] == "=== Drains"
    shown = [re.sub(r" \(d\.[0-9a-f-]{36}\)$", "", line) for line in listed[1:] if line]
    assert shown == [HTTPS, SYSLOG]
    drains = json.loads(heroku("drains", "--json", "-a", APP).stdout)
    assert [d["url"] for d in drains] == [HTTPS, SYSLOG]
    assert all(d["addon"] is None and d["token"].startswith("d.") for d in drains)
    extended = heroku("drains", "-x", "-a", APP).stdout
    assert f"drain_id={drains[0]['id']}" in extended


def test_drains_remove_by_url_and_by_token(heroku: Heroku, server: RunningServer) -> None:
    drains = json.loads(heroku("drains", "--json", "-a", APP).stdout)
    by_url = heroku("drains:remove", HTTPS, "-a", APP)
    assert f"Successfully removed drain {HTTPS}" in by_url.stdout
    by_token = heroku("drains:remove", drains[1]["token"], "-a", APP)
    assert f"Successfully removed drain {SYSLOG}" in by_token.stdout
    assert json.loads(heroku("drains", "--json", "-a", APP).stdout) == []
    missing = heroku("drains:remove", SYSLOG, "-a", APP, check=False)
    assert missing.returncode != 0 and "No drain" in missing.stderr


def test_drains_add_refuses_a_bad_url_with_its_reason(
    heroku: Heroku, server: RunningServer
) -> None:
    refused = heroku("drains:add", "ftp://logs.example.com/", "-a", APP, check=False)
    assert refused.returncode != 0
    assert "use https://, http://, syslog:// or syslog+tls://" in said(refused.stderr)
    loopback = heroku("drains:add", "http://127.0.0.1:5050/", "-a", APP, check=False)
    assert loopback.returncode != 0
    assert "127.0.0.1 is a loopback address" in said(loopback.stderr)
