"""Debian's pebble ACME test server and its challenge test server, for the ACME tests.

``Pebble`` runs ``pebble-challtestsrv`` as pebble's DNS server (every name resolves to
127.0.0.1, none to an IPv6 address) and ``pebble`` with a config written for the test: free
ports for its ACME and management listeners, the HTTP-01 port given (the router's), and a TLS
certificate for its own listener from a throwaway CA made here (pebble's Debian package ships
none), whose file is what a client trusts to reach the directory. ``PEBBLE_VA_NOSLEEP`` and
``PEBBLE_WFE_NONCEREJECT=0`` keep it quick and steady.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dynos.testing.harness import RunningServer, start_server

DOMAIN = "example.test"  # the domain of the servers acme_server starts (any name resolves)
PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def installed() -> bool:
    return shutil.which(PEBBLE) is not None and shutil.which(CHALLTESTSRV) is not None


# Skipped where pebble is missing, except in CI, which installs it (.ci/run): there the tests
# fail instead of passing unseen.
needs_pebble = pytest.mark.skipif(
    not installed() and not os.environ.get("CI"),
    reason="Debian's pebble is not installed (apt-get install pebble; .ci/run does)",
)


def free_port() -> int:
    """A port free now: pebble takes its listen addresses from its config, not port 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def write_listener_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 and localhost signed by it: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("pebble listener test CA"))
        .issuer_name(_name("pebble listener test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "listener-ca.pem", directory / "listener.pem", directory / "listener.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass(frozen=True)
class PebbleSite:
    """Where a pebble will listen, and the certificate it will show there (and its CA)."""

    port: int
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def choose(cls, workdir: Path) -> PebbleSite:
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(free_port(), *write_listener_certificate(workdir))

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"


@dataclass
class Pebble:
    """A running pebble and challtestsrv; ``stop`` ends both."""

    directory_url: str
    management_url: str
    ca_bundle: Path  # trusts pebble's own HTTPS listener (not the certificates it issues)
    processes: list[subprocess.Popen[bytes]]

    @classmethod
    def start(
        cls,
        workdir: Path,
        http_port: int,
        *,
        validity: int | None = None,
        site: PebbleSite | None = None,
    ) -> Pebble:
        """Pebble validating HTTP-01 on ``http_port``; ``validity``: seconds each issued
        certificate lasts (pebble's default: five years); ``site``: its address and listener
        certificate, chosen before (a dynos server is told them before pebble starts)."""
        site = site or PebbleSite.choose(workdir)
        dns, challenge_mgmt, mgmt_port = free_port(), free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{site.port}",
                "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                "certificate": str(site.cert),
                "privateKey": str(site.key),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                **({"certificateValidityPeriod": validity} if validity else {}),
            }
        }
        config_path = workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config))
        log = (workdir / "pebble.log").open("ab")
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        processes = [
            subprocess.Popen(
                [
                    CHALLTESTSRV,
                    *("-dns01", f"127.0.0.1:{dns}", "-management", f"127.0.0.1:{challenge_mgmt}"),
                    *("-http01", "", "-https01", "", "-tlsalpn01", ""),
                    *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ]
        processes.append(
            subprocess.Popen(
                [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        log.close()
        pebble = cls(site.directory_url, f"https://127.0.0.1:{mgmt_port}", site.ca, processes)
        pebble._wait_ready(workdir / "pebble.log")
        return pebble

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.directory_url, context=self._context(), timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    self.stop()
                    said = log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"pebble did not start:\n{said}") from None
                time.sleep(0.05)

    def issuing_root(self) -> bytes:
        """The root that pebble's issued certificates chain to (made anew at each start)."""
        url = f"{self.management_url}/roots/0"
        with urllib.request.urlopen(url, context=self._context(), timeout=5) as answer:
            return bytes(answer.read())

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def acme_server(
    tmp_path: Path, *extra: str, validity: int | None = None, validate_on: int | None = None
) -> Iterator[tuple[RunningServer, Pebble]]:
    """A dynos server whose ACME directory is a pebble validating on the router's port (or
    on ``validate_on``).

    The server starts first (its router port is 0: free), pebble then, at the address the
    server was given; the server asks the directory nothing before an app turns ACM on."""
    site = PebbleSite.choose(tmp_path / "pebble")
    server = start_server(
        tmp_path / "home",
        *("--domain", DOMAIN, "--acme-directory", site.directory_url),
        *("--acme-ca-bundle", str(site.ca)),
        *extra,
    )
    pebble = None
    try:
        port = server.router_port if validate_on is None else validate_on
        pebble = Pebble.start(tmp_path / "pebble", port, validity=validity, site=site)
        yield server, pebble
    finally:
        if pebble is not None:
            pebble.stop()
        if server.process.poll() is None:
            server.stop()
