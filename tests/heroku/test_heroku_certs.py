"""The real heroku CLI's `certs`, `certs:add`, `certs:info` and `certs:remove` against a
dynos server (the Platform API's sni-endpoints), and `apps:info`'s https URL; with a custom
domain, the certificate the router serves for it (Python's ssl, by SNI) as the CLI's
`certs:add` question, `domains`, `domains:info`, `domains:update` and `certs:remove` move it."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

from cryptography import x509

from dynos.testing.harness import RunningServer
from tests.heroku.conftest import Heroku
from tests.platform.test_certificates import self_signed

APP = "certsdemo"


def certs_add(
    heroku: Heroku, cert: Path, key: Path, answer: bytes = b"\r", app: str = APP
) -> subprocess.CompletedProcess[str]:
    """`heroku certs:add`, answering its question (which of the app's domains to associate
    the certificate with) with ``answer``: Enter alone picks none; " \r" the first."""
    with subprocess.Popen(
        [str(heroku.bin), "certs:add", str(cert), str(key), "-a", app],
        env=heroku.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        out = b""
        answered = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (chunk := os.read(process.stdout.fileno(), 4096)):
            out += chunk
            if not answered and b"Select domains" in out:
                process.stdin.write(answer)
                process.stdin.flush()
                answered = True
        process.stdin.close()
        stderr = process.stderr.read() if process.stderr else b""
        process.wait(timeout=60)
    return subprocess.CompletedProcess(
        process.args, process.returncode, out.decode(errors="replace"), stderr.decode()
    )


def test_certs_add_list_info_and_remove(
    heroku: Heroku, server: RunningServer, tmp_path: Path
) -> None:
    heroku("apps:create", APP)
    info = heroku("apps:info", "-a", APP).stdout
    assert f"Web URL:        https://{APP}.localhost:{server.https_port}/" in info
    none = heroku("certs", "-a", APP)
    assert "SNI" not in none.stdout
    chain, key = self_signed([f"{APP}.localhost"])
    (tmp_path / "app.crt").write_text(chain)
    (tmp_path / "app.key").write_text(key)
    added = certs_add(heroku, tmp_path / "app.crt", tmp_path / "app.key")
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"Common Name(s): {APP}.localhost" in added.stdout
    assert "SSL certificate is self signed." in added.stdout
    listed = heroku("certs", "-a", APP).stdout
    assert f"{APP}.localhost" in listed and "SNI" in listed and "False" in listed
    shown = heroku("certs:info", "-a", APP).stdout
    assert f"Common Name(s): {APP}.localhost" in shown
    assert "PRIVATE KEY" not in listed + shown + added.stdout
    # A key that is not the certificate's: the API's message, and nothing added.
    other_chain, _ = self_signed([f"{APP}.localhost"])
    (tmp_path / "other.crt").write_text(other_chain)
    refused = certs_add(heroku, tmp_path / "other.crt", tmp_path / "app.key")
    assert refused.returncode != 0
    assert "private key does not match" in refused.stderr
    name = listed.split(f"{APP}.localhost")[0].split()[-1]
    heroku("certs:remove", "-a", APP, "--confirm", APP, "--name", name)
    assert f"{APP}.localhost" not in heroku("certs", "-a", APP).stdout


def served_certificate(server: RunningServer, host: str) -> x509.Certificate:
    """The certificate the router's HTTPS port presents for the server name ``host``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def verifies(server: RunningServer, host: str, cafile: Path) -> bool:
    """Whether a strict client trusting only ``cafile`` accepts the router for ``host``."""
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with (
            socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def test_a_custom_domain_is_served_with_the_certificate_it_is_associated_with(
    heroku: Heroku, server: RunningServer, tmp_path: Path
) -> None:
    app = "shopcerts"
    heroku("apps:create", app)
    heroku("domains:add", "www.shop.test", "-a", app)
    heroku("domains:add", "api.shop.test", "-a", app)
    # No certificate of the app's own: the platform CA's serves the custom domain.
    assert verifies(server, "www.shop.test", server.ca)
    # One that covers none of the app's domains is refused, saying so.
    for name, names in (("none", ["shop.example.org"]), ("www", ["www.shop.test"])):
        chain, key = self_signed(names)
        (tmp_path / f"{name}.crt").write_text(chain)
        (tmp_path / f"{name}.key").write_text(key)
    refused = certs_add(heroku, tmp_path / "none.crt", tmp_path / "none.key", app=app)
    assert refused.returncode != 0
    assert "covers none of the app's domains" in refused.stderr

    # certs:add asks which matching domain to associate: the first (www.shop.test) chosen.
    added = certs_add(heroku, tmp_path / "www.crt", tmp_path / "www.key", b" \r", app=app)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Which of these domains" in added.stdout
    assert verifies(server, "www.shop.test", tmp_path / "www.crt")
    assert verifies(server, "api.shop.test", server.ca)  # not covered: the platform's
    assert verifies(server, f"{app}.localhost", server.ca)
    for host, cacert in (("www.shop.test", tmp_path / "www.crt"), ("api.shop.test", server.ca)):
        curl = subprocess.run(
            [
                *("curl", "-sS", "-o", "/dev/null", "--max-time", "20", "--cacert", str(cacert)),
                *("--connect-to", f"{host}:443:127.0.0.1:{server.https_port}"),
                f"https://{host}/",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert curl.returncode == 0, curl.stderr  # the TLS handshake verified for that host

    endpoint = heroku("certs", "-a", app).stdout.split("www.shop.test")[0].split()[-1]
    rows = {
        line.split()[0]: line.split()
        for line in heroku("domains", "-a", app).stdout.splitlines()
        if line.strip()
    }
    assert rows["www.shop.test"][-1] == endpoint
    assert rows["api.shop.test"][-1] == f"{app}.localhost"  # no SNI endpoint column value
    info = heroku("domains:info", "www.shop.test", "-a", app).stdout
    assert endpoint in info
    listed = heroku("certs", "-a", app).stdout
    assert "www.shop.test" in listed and listed.split()[-1] == "1"  # Domains: 1
    shown = heroku("certs:info", "--show-domains", "-a", app).stdout
    assert "Domain(s):" in shown and "www.shop.test" in shown

    # A second certificate covering both: api.shop.test takes it (the newest naming it);
    # www.shop.test keeps the one it chose, until domains:update moves it.
    chain, key = self_signed(["www.shop.test", "api.shop.test"])
    (tmp_path / "both.crt").write_text(chain)
    (tmp_path / "both.key").write_text(key)
    both = certs_add(heroku, tmp_path / "both.crt", tmp_path / "both.key", b"\r", app=app)
    assert both.returncode == 0, both.stdout + both.stderr
    assert verifies(server, "api.shop.test", tmp_path / "both.crt")
    assert verifies(server, "www.shop.test", tmp_path / "www.crt")
    second = next(
        n
        for n in heroku("certs", "-a", app).stdout.split()
        if n.count("-") == 1 and n != endpoint and n[-1].isdigit()
    )
    heroku("domains:update", "www.shop.test", "--cert", second, "-a", app)
    assert verifies(server, "www.shop.test", tmp_path / "both.crt")

    # Removing a certificate: its domains fall back to another that covers them, then to
    # the platform's; removing a domain stops serving it with the app's certificate.
    heroku("certs:remove", "--name", second, "--confirm", app, "-a", app)
    assert verifies(server, "www.shop.test", tmp_path / "www.crt")
    assert verifies(server, "api.shop.test", server.ca)
    heroku("domains:remove", "www.shop.test", "-a", app)
    assert (
        served_certificate(server, "www.shop.test").issuer
        != x509.load_pem_x509_certificate((tmp_path / "www.crt").read_bytes()).issuer
    )
    rows = [line.split() for line in heroku("certs", "-a", app).stdout.splitlines()]
    assert [row[-1] for row in rows if endpoint in row] == ["0"]  # Domains: none now
