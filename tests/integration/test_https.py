"""The router's HTTPS port against a real server: `curl --cacert` with the platform CA,
the forwarded headers a dyno sees, apps' own certificates through `dynos certs:add` (and
the refusals), with one router process and with two."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, start_server, wait_for_dynos
from tests.platform.test_certificates import self_signed

HEADECHO = Path(__file__).parent / "apps" / "headecho"


@pytest.fixture(params=[1, 2], ids=["one-router-process", "two-router-processes"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path / "home", "--stop-grace", "2", "--router-processes", str(request.param)
    )
    try:
        server.create_app("echo")
        server.deploy("echo", HEADECHO)
        wait_for_dynos(server, "echo", {"web.1": "up"})
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def curl(server: RunningServer, cacert: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *("curl", "-sS", "--max-time", "20", "--cacert", str(cacert)),
            *args,
            f"https://echo.localhost:{server.https_port}/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def headers_seen(answer: str) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(answer)["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_curl_reaches_an_app_over_https_trusting_the_platform_ca(served: RunningServer) -> None:
    info = json.loads((served.home / "server.json").read_text())
    assert info["https_port"] == served.https_port > 0
    result = curl(served, served.ca, "-H", "X-Forwarded-Proto: http", "-H", "X-Forwarded-Port: 1")
    assert result.returncode == 0, result.stderr
    seen = headers_seen(result.stdout)
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-port"] == [str(served.https_port)]
    # The HTTP port stays, and says so.
    with served.router("echo") as http:
        plain = headers_seen(http.get("/", headers={"X-Forwarded-Proto": "https"}).text)
    assert plain["x-forwarded-proto"] == ["http"]
    assert plain["x-forwarded-port"] == [str(served.router_port)]
    # Without the CA, curl refuses the certificate.
    untrusted = subprocess.run(
        ["curl", "-sS", "--max-time", "20", f"https://echo.localhost:{served.https_port}/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert untrusted.returncode == 60, untrusted.stderr
    # The CA's key is the server's only; the CLI says where the CA is.
    tls = served.home / "tls"
    assert stat.S_IMODE((tls / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "issued").stat().st_mode) == 0o700
    assert served.cli("certs:ca").stdout.strip() == str(served.ca)
    # A dyno of the app (its own user) reads none of the keys.
    keys = f"{tls / 'ca.key'} {tls / 'issued' / 'echo.localhost.key'}"
    result = served.cli("run", "-a", "echo", "--no-tty", f"cat {keys}", check=False)
    assert result.returncode != 0
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert "https://echo.localhost:" in served.cli("apps:info", "-a", "echo").stdout
    assert served.cli("open", "-a", "echo").stdout.strip() == (
        f"https://echo.localhost:{served.https_port}/"
    )


def test_an_apps_own_certificate_is_served_once_added(
    served: RunningServer, tmp_path: Path
) -> None:
    chain, key = self_signed(["echo.localhost"])
    (tmp_path / "own.pem").write_text(chain)
    (tmp_path / "own.key").write_text(key)
    other_chain, other_key = self_signed(["www.example.com"])
    (tmp_path / "other.pem").write_text(other_chain)
    (tmp_path / "other.key").write_text(other_key)
    refused = served.cli(
        "certs:add",
        str(tmp_path / "own.pem"),
        str(tmp_path / "other.key"),
        "-a",
        "echo",
        check=False,
    )
    assert refused.returncode == 1
    assert "private key does not match" in refused.stderr
    refused = served.cli(
        "certs:add",
        str(tmp_path / "other.pem"),
        str(tmp_path / "other.key"),
        "-a",
        "echo",
        check=False,
    )
    assert "covers none of the app's domains (echo.localhost" in refused.stderr
    assert "has no SSL certificates" in served.cli("certs", "-a", "echo").stdout
    added = served.cli(
        "certs:add", str(tmp_path / "own.pem"), str(tmp_path / "own.key"), "-a", "echo"
    )
    assert "echo.localhost" in added.stdout
    assert "PRIVATE KEY" not in added.stdout
    listed = served.cli("certs", "-a", "echo").stdout
    assert "echo.localhost" in listed and "SNI" in listed
    # Every new connection (spread over the router processes) gets the app's own.
    for _ in range(6):
        result = curl(served, tmp_path / "own.pem")
        assert result.returncode == 0, result.stderr
        assert headers_seen(result.stdout)["x-forwarded-proto"] == ["https"]
    served.cli("certs:remove", "-a", "echo", "--confirm", "echo")
    for _ in range(4):
        assert curl(served, served.ca).returncode == 0
    log = (served.home.parent / "home-server.log").read_text()
    assert "PRIVATE KEY" not in log
