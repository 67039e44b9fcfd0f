"""Issue 13's measure of done: examples/django, a Django app written for Heroku (gunicorn,
WhiteNoise, DATABASE_URL, `release: ./manage.py migrate`), deploys unmodified, serves its
pages and its hashed static files from a managed Postgres, and a failing release phase
keeps the release before it serving. Needs PyPI (one build) and PostgreSQL."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import EXAMPLES, RunningServer, wait_for

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/lib/postgresql").is_dir(), reason="needs Debian's postgresql package"
    ),
    pytest.mark.timeout(600),
]

APP = "getting-started"


def page(server: RunningServer, path: str) -> tuple[int, str, str]:
    with server.router(APP) as web:
        response = web.get(path)
    return response.status_code, response.headers.get("content-type", ""), response.text


def greetings(server: RunningServer) -> int:
    """Visit /db/ (which adds a row) and read how many rows there are now; -1 if not served."""
    status, _, text = page(server, "/db/")
    found = re.search(r'<p id="count">(\d+) greeting', text)
    return int(found.group(1)) if status == 200 and found else -1


def test_a_django_app_written_for_heroku_runs_unmodified(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app(APP)
    server.cli("addons:create", "heroku-postgresql", "-a", APP)
    config = server.cli("config", "-a", APP, "--json").stdout
    assert '"DATABASE_URL": "postgres://' in config

    deployed = server.cli("deploy", str(EXAMPLES / "django"), "-a", APP, check=False)
    out = deployed.stdout
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "-----> Python app detected" in out
    assert "collectstatic" in out
    assert "Running release command" in out
    assert "Apply all migrations" in out or "Applying hello.0001_initial... OK" in out
    assert re.search(r"Released v\d+", out)

    wait_for(lambda: page(server, "/")[0] == 200, timeout=120, what="the home page")
    _, _, home = page(server, "/")
    assert "Getting started with Python" in home
    # collectstatic ran at build: WhiteNoise serves the stylesheet under its hashed name.
    found = re.search(r'href="(/static/hello/style\.[0-9a-f]{12}\.css)"', home)
    assert found, home
    status, kind, css = page(server, found.group(1))
    assert (status, kind.split(";")[0]) == (200, "text/css") and "font-family" in css

    # The release phase migrated the add-on's database: each visit adds a row.
    first = greetings(server)
    assert first >= 1
    assert greetings(server) == first + 1

    # A release phase that fails leaves the release before it serving.
    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLES / "django", broken)
    procfile = (broken / "Procfile").read_text()
    (broken / "Procfile").write_text(
        procfile.replace("release: ./manage.py migrate --no-input", "release: exit 3")
    )
    failed = server.cli("deploy", str(broken), "-a", APP, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "failed" in failed.stdout + failed.stderr
    assert greetings(server) == first + 2
    assert "release command failed" in server.cli("releases", "-a", APP).stdout
