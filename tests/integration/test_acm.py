"""Automatic certificates end to end: a real server, Debian's pebble as its ACME directory
(with pebble-challtestsrv resolving every name to 127.0.0.1), HTTP-01 answered by the
server's router on its HTTP port, `dynos certs:auto*` as a user types them."""

from __future__ import annotations

import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from tests.acm.pebble import DOMAIN, Pebble, PebbleSite, acme_server, free_port, needs_pebble
from tests.integration.conftest import RunningServer, start_server, wait_for

pytestmark = needs_pebble


def names(leaf: x509.Certificate) -> list[str]:
    san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    return sorted(san.value.get_values_for_type(x509.DNSName))


def acm_status(server: RunningServer, app: str) -> dict[str, object]:
    with server.api() as api:
        answer = api.get(f"/apps/{app}/acm")
        answer.raise_for_status()
        return dict(answer.json())


def served_certificate(server: RunningServer, host: str, root: bytes | None) -> x509.Certificate:
    """The certificate the router's HTTPS port shows for ``host`` (SNI); with ``root``, the
    handshake verifies it up to that root (pebble's) for that name."""
    context = ssl.create_default_context()
    if root is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=root.decode())
    with (
        socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def acm_endpoints(server: RunningServer, app: str) -> list[dict[str, Any]]:
    with server.api() as api:
        return [e for e in api.get(f"/apps/{app}/sni-endpoints").json() if e["ssl_cert"]["acm"]]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Pebble]]:
    with acme_server(tmp_path) as started:
        yield started


def test_certs_auto_enable_gets_a_certificate_through_the_routers_http_port(
    served: tuple[RunningServer, Pebble],
) -> None:
    server, pebble = served
    server.create_app("shop")
    off = server.cli("certs:auto", "-a", "shop").stdout
    assert "Automatic Certificate Management is disabled on shop" in off

    enabled = server.cli("certs:auto:enable", "-a", "shop", "--wait")
    assert "Enabling Automatic Certificate Management on ⬢ shop... starting" in enabled.stdout
    assert "shop.example.test  Cert Issued" in enabled.stdout

    status = acm_status(server, "shop")
    assert status["acm_status"] == "cert issued"
    assert status["domains"] == [
        {
            "hostname": "shop.example.test",
            "acm_status": "cert issued",
            "acm_status_reason": None,
            "updated_at": status["domains"][0]["updated_at"],  # type: ignore[index]
        }
    ]
    # The HTTPS port serves it for the app's host: verified up to pebble's issuing root.
    root = pebble.issuing_root()
    leaf = served_certificate(server, "shop.example.test", root)
    assert names(leaf) == ["shop.example.test"]
    [endpoint] = acm_endpoints(server, "shop")
    assert endpoint["ssl_cert"]["cert_domains"] == ["shop.example.test"]
    key = server.home / "tls" / "own" / f"{endpoint['id']}.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    account_key = server.home / "tls" / "acme" / "account.key"
    assert stat.S_IMODE(account_key.stat().st_mode) == 0o600
    with server.api() as api:
        assert api.get("/apps/shop").json()["acm"] is True

    shown = server.cli("certs:auto", "-a", "shop").stdout
    assert "Automatic Certificate Management is enabled on shop" in shown
    assert "Common Name(s): shop.example.test" in shown
    assert "Renewal scheduled for" in shown

    refused = server.cli("certs:auto:disable", "-a", "shop", check=False)
    assert refused.returncode == 1 and "--confirm shop" in refused.stderr
    server.cli("certs:auto:disable", "-a", "shop", "--confirm", "shop")
    assert acm_endpoints(server, "shop") == [] and not key.exists()
    # The platform's own certificate serves the host again.
    again = served_certificate(server, "shop.example.test", server.ca.read_bytes())
    assert again.issuer != leaf.issuer
    with server.api() as api:
        assert api.get("/apps/shop").json()["acm"] is False
    assert "disabled on shop" in server.cli("certs:auto", "-a", "shop").stdout


def test_a_certificate_is_renewed_before_it_expires(tmp_path: Path) -> None:
    # Pebble's certificates last 9 s here: the server renews each with a third left (3 s).
    with acme_server(tmp_path, validity=9) as (server, pebble):
        server.create_app("shop")
        server.cli("certs:auto:enable", "-a", "shop", "--wait")
        root = pebble.issuing_root()
        first = served_certificate(server, "shop.example.test", root)
        first_status = acm_status(server, "shop")

        def renewed() -> bool:
            served = served_certificate(server, "shop.example.test", None)
            return served.serial_number != first.serial_number

        wait_for(renewed, timeout=40)
        second = served_certificate(server, "shop.example.test", root)
        assert second.not_valid_after_utc > first.not_valid_after_utc
        # Renewed before the first one expired.
        assert second.not_valid_before_utc < first.not_valid_after_utc
        status = acm_status(server, "shop")
        assert status["acm_status"] == "cert issued"
        assert status["certificate"] != first_status["certificate"]
        assert len(acm_endpoints(server, "shop")) == 1  # replaced, not added
        logs = server.logs("shop")
        assert logs.count("dynos[acm]: Certificate issued for shop.example.test") >= 2


def test_a_failing_validation_shows_the_acme_servers_reason(tmp_path: Path) -> None:
    # Pebble validates on a port nothing listens on: every challenge fails.
    with acme_server(tmp_path, validate_on=free_port()) as (server, _pebble):
        server.create_app("shop")
        enabled = server.cli("certs:auto:enable", "-a", "shop", "--wait", check=False)
        assert enabled.returncode == 1
        assert "The certificate could not be issued" in enabled.stderr
        assert "shop.example.test  Failing" in enabled.stdout
        status = acm_status(server, "shop")
        assert status["acm_status"] == "failing"
        reason = str(status["acm_status_reason"])
        assert reason.startswith("Validation failed: shop.example.test:")
        shown = server.cli("certs:auto", "-a", "shop").stdout
        assert "shop.example.test  Failing" in shown
        assert "Validation failed" in shown
        # Refresh asks again at once; it is refused for an app without ACM.
        server.cli("certs:auto:refresh", "-a", "shop")
        server.create_app("other")
        refused = server.cli("certs:auto:refresh", "-a", "other", check=False)
        assert refused.returncode == 1
        assert "certs:auto:enable -a other" in refused.stderr


def test_router_processes_answer_the_challenges_too(tmp_path: Path) -> None:
    # With four router processes, each of pebble's validation requests (a connection of its
    # own) lands on any of them: every process must have the challenges before pebble is
    # told to look. Four validations all landing on the server's own process: 1 in 256
    # (tests/router/test_router_challenges.py checks each process deterministically).
    with acme_server(tmp_path, "--router-processes", "4") as (server, _pebble):
        apps = [f"shop{number}" for number in range(4)]
        for app in apps:
            server.create_app(app)
            server.cli("certs:auto:enable", "-a", app)
        for app in apps:
            shown = server.cli("certs:auto", "-a", app, "--wait").stdout
            assert f"{app}.example.test  Cert Issued" in shown


def test_the_certificate_covers_custom_domains_and_follows_new_ones(tmp_path: Path) -> None:
    with acme_server(tmp_path) as (server, pebble):
        server.create_app("shop")
        server.cli("domains:add", "www.shop.test", "-a", "shop")
        server.cli("certs:auto:enable", "-a", "shop", "--wait")
        root = pebble.issuing_root()
        for host in ("shop.example.test", "www.shop.test"):
            leaf = served_certificate(server, host, root)
            assert names(leaf) == ["shop.example.test", "www.shop.test"]
        with server.api() as api:
            domains = {d["hostname"]: d["acm_status"] for d in api.get("/apps/shop/domains").json()}
        assert domains == {"shop.example.test": "cert issued", "www.shop.test": "cert issued"}

        # A domain added later gets a certificate of its own names at once: a new order.
        server.cli("domains:add", "shop.test", "-a", "shop")
        shown = server.cli("certs:auto", "-a", "shop", "--wait").stdout
        assert "shop.test          Cert Issued" in shown
        leaf = served_certificate(server, "shop.test", root)
        assert names(leaf) == ["shop.example.test", "shop.test", "www.shop.test"]


def test_a_restarted_server_keeps_serving_its_certificate_without_a_new_order(
    tmp_path: Path,
) -> None:
    site = PebbleSite.choose(tmp_path / "pebble")
    options = ("--domain", DOMAIN, "--acme-directory", site.directory_url)
    options += ("--acme-ca-bundle", str(site.ca))
    server = start_server(tmp_path / "home", *options)
    pebble = Pebble.start(tmp_path / "pebble", server.router_port, site=site)
    try:
        server.create_app("shop")
        server.cli("certs:auto:enable", "-a", "shop", "--wait")
        root = pebble.issuing_root()
        before = served_certificate(server, "shop.example.test", root)
        assert server.stop() == 0
        # The same router port, so that pebble could validate again (it must not need to).
        server = start_server(tmp_path / "home", *options, "--router-port", str(server.router_port))
        after = served_certificate(server, "shop.example.test", root)
        assert after.serial_number == before.serial_number
        status = acm_status(server, "shop")
        assert status["acm_status"] == "cert issued"
        assert server.logs("shop").count("Certificate issued") == 0  # nothing new ordered
        # The account is found again by its key: a refresh orders with it.
        server.cli("certs:auto:refresh", "-a", "shop")
        shown = server.cli("certs:auto", "-a", "shop", "--wait").stdout
        assert "shop.example.test  Cert Issued" in shown
        assert served_certificate(server, "shop.example.test", root).serial_number != (
            before.serial_number
        )
    finally:
        pebble.stop()
        if server.process.poll() is None:
            server.stop()
