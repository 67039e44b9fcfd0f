"""The real heroku CLI with the Postgres add-on: addons:create, addons, addons:info."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from dynos.testing.harness import RunningServer
from tests.heroku.conftest import Heroku

pytestmark = [
    pytest.mark.timeout(600),  # the first test may wait for the CLI's one-time npm install
    pytest.mark.skipif(
        shutil.which("psql") is None, reason="needs PostgreSQL (apt-get install postgresql)"
    ),
]

APP = "herokupg"


def get(server: RunningServer, path: str) -> Any:
    with server.api() as api:
        response = api.get(path)
    response.raise_for_status()
    return response.json()


def test_addons_create_heroku_postgresql_with_a_plan(heroku: Heroku, server: RunningServer) -> None:
    heroku("apps:create", APP)
    result = heroku("addons:create", "heroku-postgresql:essential-0", "-a", APP)
    addons = get(server, f"/apps/{APP}/addons")
    assert [a["plan"]["name"] for a in addons] == ["heroku-postgresql:essential-0"]
    assert "DATABASE_URL" in get(server, f"/apps/{APP}/config-vars")
    assert addons[0]["name"] in result.stdout + result.stderr


def test_addons_lists_the_database_and_its_attachment(
    heroku: Heroku, server: RunningServer
) -> None:
    result = heroku("addons", "-a", APP)
    name = get(server, f"/apps/{APP}/addons")[0]["name"]
    assert f"heroku-postgresql ({name})" in result.stdout
    assert "essential-0" in result.stdout and "as DATABASE" in result.stdout


def test_addons_info_shows_the_database(heroku: Heroku, server: RunningServer) -> None:
    name = get(server, f"/apps/{APP}/addons")[0]["name"]
    for wanted in (name, "DATABASE"):
        result = heroku("addons:info", wanted, "-a", APP)
        assert f"=== {name}" in result.stdout
        assert "heroku-postgresql:essential-0" in result.stdout
        assert "DATABASE" in result.stdout and APP in result.stdout


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_addons_lists_every_kind_with_its_attachment(heroku: Heroku, server: RunningServer) -> None:
    """It used to fail at once on GET /apps/{app}/addon-attachments, whatever the add-ons."""
    heroku("apps:create", "herokuredis")
    heroku("addons:create", "heroku-redis:mini", "-a", "herokuredis")
    result = heroku("addons", "-a", "herokuredis")
    [addon] = get(server, "/apps/herokuredis/addons")
    assert f"redis ({addon['name']})" in result.stdout and "as REDIS" in result.stdout
    everywhere = heroku("addons", "--all").stdout
    assert addon["name"] in everywhere and "postgresql-" in everywhere
