"""Custom domains end to end: a real server with three router processes, real dynos, the
`dynos` CLI, and curl sending requests for ``www.example.com`` to the router's port. Every
router process routes the domain (new connections spread over them) from the moment
``domains:add`` returns, and none does once it is removed, moved or its app destroyed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, dyno_states, start_server, wait_for
from tests.integration.conftest import EXAMPLES

ENVECHO = Path(__file__).parent / "apps" / "envecho"
PROCESSES = 3
# New connections land on the router processes by a hash of their addresses: 24 of them
# leave one of three processes out with probability 3 * (2/3)^24, about 2e-4.
CONNECTIONS = 24


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: the second test changes nothing the first looks at."""
    home = tmp_path_factory.mktemp("domains") / "home"
    server = start_server(home, "--router-processes", str(PROCESSES), "--stop-grace", "2")
    try:
        server.create_app("shop")
        server.deploy("shop", ENVECHO)
        server.create_app("blog")
        server.deploy("blog", EXAMPLES / "hello")
        wait_for(
            lambda: (
                dyno_states(server, "shop") == {"web.1": "up"}
                and dyno_states(server, "blog") == {"web.1": "up"}
            ),
            what="shop's and blog's web.1 up",
        )
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def curl(server: RunningServer, url_host: str) -> tuple[int, str]:
    """``curl http://<url_host>:<router port>/``, the name resolved to the router's address
    (as DNS would resolve a custom domain pointed at it): the status and the body."""
    port = server.router_port
    result = subprocess.run(
        [
            *("curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"),
            *("--resolve", f"{url_host}:{port}:127.0.0.1", f"http://{url_host}:{port}/"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def answers(server: RunningServer, url_host: str) -> set[tuple[int, str]]:
    """What the router answers for ``url_host`` over CONNECTIONS new connections (so every
    router process answers), each as (status, which app answered)."""
    seen = set()
    for _ in range(CONNECTIONS):
        status, body = curl(server, url_host)
        if body.startswith("{"):
            seen.add((status, f"shop {json.loads(body)['dyno']}"))
        elif body.startswith("Hello from "):
            seen.add((status, f"blog {body.split()[-1].rstrip('!')}"))
        else:
            seen.add((status, "router"))
    return seen


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_custom_domain_reaches_its_apps_dyno_through_every_router_process(
    routed: RunningServer,
) -> None:
    server = routed
    assert answers(server, "www.example.com") == {(404, "router")}

    added = server.cli("domains:add", "www.example.com", "-a", "shop")
    assert "Adding www.example.com to \u2b22 shop... done" in added.stdout
    assert "DNS Target shop.localhost" in added.stdout
    assert answers(server, "www.example.com") == {(200, "shop web.1")}
    assert answers(server, "shop.localhost") == {(200, "shop web.1")}

    listed = server.cli("domains", "-a", "shop").stdout
    assert [line.rstrip() for line in listed.splitlines()] == [
        "=== shop Heroku Domain",
        "shop.localhost",
        "",
        "=== shop Custom Domains",
        "Domain Name      DNS Target      SNI Endpoint",
        "www.example.com  shop.localhost",
    ]

    taken = server.cli("domains:add", "WWW.example.com", "-a", "blog", check=False)
    assert taken.returncode == 1
    assert "already in use by the app shop" in taken.stderr
    assert answers(server, "www.example.com") == {(200, "shop web.1")}

    # Moved to another app: every process follows.
    server.cli("domains:remove", "www.example.com", "-a", "shop")
    assert answers(server, "www.example.com") == {(404, "router")}
    server.cli("domains:add", "www.example.com", "-a", "blog")
    assert answers(server, "www.example.com") == {(200, "blog web.1")}

    # Destroyed with its app: routed nowhere, and free for another app.
    server.cli("apps:destroy", "-a", "blog", "--confirm", "blog")
    assert answers(server, "www.example.com") == {(404, "router")}
    server.cli("domains:add", "www.example.com", "-a", "shop")
    assert answers(server, "www.example.com") == {(200, "shop web.1")}


def test_wrong_hostnames_are_refused_by_the_cli_with_the_reason(routed: RunningServer) -> None:
    before = routed.cli("domains", "-a", "shop").stdout
    for hostname, said in [
        ("*.example.com", "Wildcard domains"),
        ("blog.localhost", "platform's own domain"),
        ("git.localhost", "platform's own domain"),
        ("bad_name.example.com", "RFC 1123"),
    ]:
        result = routed.cli("domains:add", hostname, "-a", "shop", check=False)
        assert result.returncode == 1, hostname
        assert said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    own = routed.cli("domains:remove", "shop.localhost", "-a", "shop", check=False)
    assert own.returncode == 1 and "the app's own hostname" in own.stderr
    assert routed.cli("domains", "-a", "shop").stdout == before
