"""The real heroku CLI's ``domains`` commands against a real server: ``domains``,
``domains:add`` (which lists the app's SNI endpoints first, and with ``--wait`` polls the
domain), ``domains:info``, ``domains:wait``, ``domains:update``, ``domains:remove`` and
``domains:clear``. A domain added is routed: a request with its ``Host`` reaches the app's
dyno through the router, and stops reaching it once removed.

The tests run in file order on one app, as a user's session would."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dynos.testing.harness import RunningServer, wait_for_dynos
from tests.heroku.conftest import Heroku

pytestmark = pytest.mark.timeout(600)  # the first test may wait for the CLI's npm install

ENVECHO = Path(__file__).parents[1] / "integration" / "apps" / "envecho"
APP = "domaindemo"
OTHER = "otherdemo"


def through_router(server: RunningServer, host: str) -> tuple[int, str | None]:
    """A request with ``Host: host`` to the router: the status, and the dyno that answered."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.router_port}", timeout=30) as client:
        response = client.get("/", headers={"Host": host})
    dyno = response.json()["dyno"] if response.status_code == 200 else None
    return response.status_code, dyno


def test_an_app_lists_its_own_hostname(heroku: Heroku, server: RunningServer) -> None:
    server.create_app(APP)
    server.deploy(APP, ENVECHO)
    server.create_app(OTHER)
    wait_for_dynos(server, APP, {"web.1": "up"})

    result = heroku("domains", "-a", APP)

    assert result.stdout.splitlines() == [f"=== {APP} Heroku Domain", "", f"{APP}.localhost"]


def test_domains_add_routes_the_hostname_to_the_app(heroku: Heroku, server: RunningServer) -> None:
    assert through_router(server, "www.example.com") == (404, None)

    result = heroku("domains:add", "www.example.com", "-a", APP)

    assert (
        f"Configure your app's DNS provider to point to the DNS Target {APP}.localhost"
        in result.stdout
    )
    assert f"Adding www.example.com to {APP}... done" in result.stderr
    assert through_router(server, "www.example.com") == (200, "web.1")
    assert through_router(server, "WWW.Example.com:80") == (200, "web.1")


def test_domains_add_wait_returns_once_the_domain_is_routed(
    heroku: Heroku, server: RunningServer
) -> None:
    result = heroku("domains:add", "api.example.com", "--wait", "-a", APP)
    assert "Waiting for api.example.com... done" in result.stderr
    assert through_router(server, "api.example.com") == (200, "web.1")


def test_domains_lists_the_custom_domains_with_their_dns_target(heroku: Heroku) -> None:
    lines = [line.strip() for line in heroku("domains", "-a", APP).stdout.splitlines()]

    assert lines[:4] == [f"=== {APP} Heroku Domain", "", f"{APP}.localhost", ""]
    assert f"=== {APP} Custom Domains" in lines
    rows = [line.split() for line in lines if line.endswith(f"{APP}.localhost") and " " in line]
    assert sorted(rows) == [
        ["api.example.com", "CNAME", f"{APP}.localhost"],
        ["www.example.com", "CNAME", f"{APP}.localhost"],
    ]
    shown = json.loads(heroku("domains", "-a", APP, "--json").stdout)
    # The CLI pages by id (``Range: id ..; max=1000;``): in the order of the ids.
    assert sorted((d["hostname"], d["kind"], d["status"]) for d in shown) == [
        ("api.example.com", "custom", "succeeded"),
        (f"{APP}.localhost", "heroku", "none"),
        ("www.example.com", "custom", "succeeded"),
    ]


def test_domains_info_and_wait(heroku: Heroku) -> None:
    info = heroku("domains:info", "www.example.com", "-a", APP).stdout
    shown = dict(line.split(":", 1) for line in info.splitlines())
    assert {key: value.strip() for key, value in shown.items() if key != "id"} == {
        "hostname": "www.example.com",
        "kind": "custom",
        "cname": f"{APP}.localhost",
        "status": "succeeded",
        "app": APP,
        "created_at": shown["created_at"].strip(),
        "updated_at": shown["updated_at"].strip(),
    }
    heroku("domains:wait", "www.example.com", "-a", APP)
    heroku("domains:wait", "-a", APP)


def test_a_domain_of_another_app_is_refused(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("domains:add", "www.example.com", "-a", OTHER, check=False)

    assert result.returncode != 0
    assert f"already in use by the app {APP}" in result.stderr
    assert through_router(server, "www.example.com") == (200, "web.1")


def test_a_wrong_hostname_or_a_chosen_certificate_is_refused(heroku: Heroku) -> None:
    wildcard = heroku("domains:add", "*.example.com", "-a", APP, check=False)
    assert wildcard.returncode != 0 and "Wildcard domains" in wildcard.stderr
    own = heroku("domains:add", f"{OTHER}.localhost", "-a", APP, check=False)
    assert own.returncode != 0 and "platform's own domain" in own.stderr
    update = heroku("domains:update", "www.example.com", "--cert", "mine", "-a", APP, check=False)
    assert update.returncode != 0 and "find that SNI endpoint (mine)" in update.stderr


def test_domains_remove_stops_routing_the_hostname(heroku: Heroku, server: RunningServer) -> None:
    result = heroku("domains:remove", "www.example.com", "-a", APP)

    assert f"Removing www.example.com from {APP}... done" in result.stderr
    assert through_router(server, "www.example.com") == (404, None)
    assert through_router(server, "api.example.com") == (200, "web.1")


def test_domains_clear_removes_every_custom_domain(heroku: Heroku, server: RunningServer) -> None:
    heroku("domains:clear", "-a", APP)

    assert through_router(server, "api.example.com") == (404, None)
    assert heroku("domains", "-a", APP).stdout.splitlines() == [
        f"=== {APP} Heroku Domain",
        "",
        f"{APP}.localhost",
    ]
    assert through_router(server, f"{APP}.localhost") == (200, "web.1")
