"""The heroku CLI's ACM commands against a dynos server whose ACME directory is pebble:
``certs:auto:refresh`` (PATCH /apps/{app}/acm) orders a new certificate and
``certs:auto:disable`` (DELETE) removes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from dynos.testing.harness import RunningServer, wait_for
from tests.acm.pebble import Pebble, acme_server, needs_pebble
from tests.heroku.conftest import Heroku, heroku_env

pytestmark = [needs_pebble, pytest.mark.timeout(600)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Pebble]]:
    with acme_server(tmp_path) as started:
        yield started


def status(server: RunningServer, app: str) -> dict[str, object]:
    with server.api() as api:
        return dict(api.get(f"/apps/{app}/acm").json())


def serial(server: RunningServer, app: str) -> int:
    """The serial number of the app's ACM certificate (its sni-endpoint)."""
    with server.api() as api:
        endpoints = api.get(f"/apps/{app}/sni-endpoints").json()
    [chain] = [e["certificate_chain"] for e in endpoints if e["ssl_cert"]["acm"]]
    return x509.load_pem_x509_certificate(chain.encode()).serial_number


def test_heroku_refreshes_and_disables_acm(
    heroku_bin: Path, served: tuple[RunningServer, Pebble], tmp_path: Path
) -> None:
    server, _ = served
    heroku = Heroku(heroku_bin, heroku_env(server, tmp_path / "heroku-home"))
    server.create_app("shop")
    server.cli("certs:auto:enable", "-a", "shop", "--wait")
    first = serial(server, "shop")

    refreshed = heroku("certs:auto:refresh", "-a", "shop")
    assert "Refreshing Automatic Certificate Management... done" in refreshed.stderr
    wait_for(lambda: status(server, "shop")["acm_status"] == "cert issued", timeout=60)
    assert serial(server, "shop") != first

    disabled = heroku("certs:auto:disable", "-a", "shop", "--confirm", "shop")
    assert "Disabling Automatic Certificate Management... done" in disabled.stderr
    assert status(server, "shop")["acm"] is False
    with server.api() as api:
        assert api.get("/apps/shop").json()["acm"] is False


def test_heroku_enables_acm_and_shows_each_domains_status(
    heroku_bin: Path, served: tuple[RunningServer, Pebble], tmp_path: Path
) -> None:
    server, _ = served
    heroku = Heroku(heroku_bin, heroku_env(server, tmp_path / "heroku-home"))
    server.create_app("shop")
    heroku("domains:add", "www.shop.test", "-a", "shop")
    enabled = heroku("certs:auto:enable", "-a", "shop")
    assert "Enabling Automatic Certificate Management... starting" in enabled.stderr
    wait_for(lambda: status(server, "shop")["acm_status"] == "cert issued", timeout=60)

    shown = heroku("certs:auto", "-a", "shop").stdout
    assert "Automatic Certificate Management is enabled on shop" in shown
    assert "Common Name(s)" in shown and "www.shop.test" in shown
    rows = [line for line in shown.splitlines() if line.strip().startswith("www.shop.test")]
    assert any("Cert issued" in row for row in rows), shown
    # heroku certs lists the ACM certificate among the app's.
    assert "www.shop.test" in heroku("certs", "-a", "shop").stdout
