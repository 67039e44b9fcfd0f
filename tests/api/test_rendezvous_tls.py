"""The rendezvous listener's certificate (api/rendezvous.py): issued by the platform CA for
every host an attach_url may name, IP literals as IP addresses, its key the server's only.
Real TLS handshakes over a socket pair; no server."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from dynos.api.rendezvous import certificate_hosts, rendezvous_context


def handshake(server: ssl.SSLContext, ca: Path, hostname: str) -> None:
    """A client trusting only ``ca`` connects as to ``hostname``; raises its SSLError."""
    near, far = socket.socketpair()
    errors: list[Exception] = []

    def serve() -> None:
        try:
            with server.wrap_socket(near, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client = ssl.create_default_context(cafile=ca)
        with client.wrap_socket(far, server_hostname=hostname) as tls:
            tls.sendall(b"x")
    finally:
        far.close()
        thread.join(10)
        near.close()


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return tmp_path / "tls"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "dynos.example"])
def test_the_certificate_covers_every_host_an_attach_url_may_name(tls_dir: Path, host: str) -> None:
    context = rendezvous_context(tls_dir, certificate_hosts("127.0.0.1", "dynos.example"))
    handshake(context, tls_dir / "ca.pem", host)


def test_a_host_it_does_not_cover_fails_verification(tls_dir: Path) -> None:
    context = rendezvous_context(tls_dir, certificate_hosts("127.0.0.1", "localhost"))
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        handshake(context, tls_dir / "ca.pem", "elsewhere.example")


def test_a_client_that_does_not_trust_the_platform_ca_refuses_it(
    tls_dir: Path, tmp_path: Path
) -> None:
    context = rendezvous_context(tls_dir, ["localhost"])
    other = tmp_path / "other"
    rendezvous_context(other, ["localhost"])  # another server's CA
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, other / "ca.pem", "localhost")


def test_the_keys_are_the_servers_only_and_a_restart_reuses_the_ca(tls_dir: Path) -> None:
    rendezvous_context(tls_dir, ["localhost"])
    ca = (tls_dir / "ca.pem").read_bytes()
    assert stat.S_IMODE((tls_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls_dir / "rendezvous").stat().st_mode) == 0o700
    assert stat.S_IMODE((tls_dir / "rendezvous" / "key.pem").stat().st_mode) == 0o600
    context = rendezvous_context(tls_dir, ["localhost"])  # the next start
    assert (tls_dir / "ca.pem").read_bytes() == ca
    handshake(context, tls_dir / "ca.pem", "localhost")


def test_listening_on_every_address_covers_each_of_the_machines_addresses() -> None:
    hosts = certificate_hosts("0.0.0.0", "localhost")
    assert {"localhost", "127.0.0.1", "::1", socket.gethostname().lower()} <= set(hosts)
    assert len(hosts) == len(set(hosts))
    assert "10.1.2.3" in certificate_hosts("10.1.2.3", "localhost")
