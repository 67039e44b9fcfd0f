"""The platform CA and the certificates it issues and installs (platform/certificates.py,
platform/tls_files.py), with a real store and real files; TLS handshakes with the result."""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from dynos.core.certificates import CertificateSource, ServedCertificate
from dynos.errors import UserError
from dynos.platform import tls_files
from dynos.platform.certificates import Certificates
from tests.platform.stage import Stage

pytestmark = pytest.mark.anyio

NOW = datetime.datetime.now(datetime.UTC)


def self_signed(
    names: list[str],
    *,
    days: int = 30,
    start: datetime.datetime | None = None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> tuple[str, str]:
    """A self-signed certificate for ``names`` and its key (P-256 unless one is given), as
    PEM text."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    signing = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    start = start or NOW - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, signing)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ca_is_made_once_with_its_key_closed(tmp_path: Path) -> None:
    authority = tls_files.ensure_ca(tmp_path / "tls")
    assert mode(tmp_path / "tls" / "ca.key") == 0o600
    assert mode(tmp_path / "tls" / "ca.pem") == 0o644
    constraints = authority.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca
    assert isinstance(authority.key, ec.EllipticCurvePrivateKey)
    lifetime = authority.certificate.not_valid_after_utc - NOW
    assert lifetime > datetime.timedelta(days=3000)
    again = tls_files.ensure_ca(tmp_path / "tls")
    assert again.certificate == authority.certificate


def test_an_issued_certificate_verifies_with_pythons_strict_client_checks(tmp_path: Path) -> None:
    authority = tls_files.ensure_ca(tmp_path)
    chain, key = tls_files.issue(authority, ["foo.localhost"])
    (tmp_path / "foo.pem").write_bytes(chain)
    (tmp_path / "foo.key").write_bytes(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "foo.pem", tmp_path / "foo.key")
    client = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert handshake(client, server, "foo.localhost") is None
    assert "Hostname mismatch" in str(handshake(client, server, "bar.localhost"))


def handshake(
    client: ssl.SSLContext, server: ssl.SSLContext, name: str
) -> ssl.SSLError | ssl.CertificateError | None:
    """A TLS handshake over memory BIOs; the client's error, or None."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, out, other_in in ((c, c_out, s_in), (s, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, ssl.CertificateError) as exc:
                if side is c:
                    return exc
            other_in.write(out.read())
        try:
            c.do_handshake()
            return None
        except ssl.SSLWantReadError:
            continue
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return exc
    raise AssertionError("the handshake did not end")


async def test_start_issues_a_certificate_per_host_and_says_so(
    stage: Stage, tmp_path: Path
) -> None:
    app = await stage.platform.create_app("foo")
    told: list[list[ServedCertificate]] = []
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store, on_change=told.append)
    await keeper.start()
    names = [c.names for c in told[-1]]
    assert names == [("git.localhost",), ("foo.localhost",)]  # no *.localhost: useless
    for cert in told[-1]:
        assert mode(Path(cert.key_path)) == 0o600
    keeper.app_created(await stage.platform.create_app("bar"))
    assert ("bar.localhost",) in [c.names for c in told[-1]]
    keeper.app_destroyed(app)
    assert ("foo.localhost",) not in [c.names for c in told[-1]]
    assert not (tmp_path / "tls" / "issued" / "foo.localhost.key").exists()


async def test_a_domain_of_two_labels_gets_a_wildcard_too(stage: Stage, tmp_path: Path) -> None:
    keeper = Certificates(tmp_path / "tls", "dynos.test", stage.store)
    await keeper.start()
    assert keeper.served[0].names == ("git.dynos.test", "*.dynos.test", "dynos.test")


async def test_an_own_certificate_is_stored_served_and_removed(
    stage: Stage, tmp_path: Path
) -> None:
    app = await stage.platform.create_app("foo")
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store)
    await keeper.start()
    chain, key = self_signed(["foo.localhost"])
    endpoint = await keeper.install(app, chain, key)
    assert endpoint.source == CertificateSource.OWN
    own = [c for c in keeper.served if c.own]
    assert [c.names for c in own] == [("foo.localhost",)]
    assert mode(Path(own[0].key_path)) == 0o600
    assert "PRIVATE KEY" not in repr(endpoint)  # the record carries no key
    facts = keeper.facts(endpoint)
    assert facts.self_signed and not facts.ca_signed
    # A server started again serves it from the store.
    again = Certificates(tmp_path / "tls2", "localhost", stage.store)
    await again.start()
    assert [c.names for c in again.served if c.own] == [("foo.localhost",)]
    await keeper.remove(endpoint)
    assert not [c for c in keeper.served if c.own]
    assert await keeper.list(app) == []
    assert not Path(own[0].key_path).exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: rsa.generate_private_key(65537, 4096),
        lambda: ec.generate_private_key(ec.SECP384R1()),
    ],
    ids=["RSA-2048", "RSA-4096", "P-384"],
)
async def test_rsa_and_p384_certificates_are_installed(
    stage: Stage, tmp_path: Path, make: object
) -> None:
    app = await stage.platform.create_app("foo")
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store)
    await keeper.start()
    chain, key = self_signed(["foo.localhost"], key=make())  # type: ignore[operator]
    await keeper.install(app, chain, key)
    assert len(await keeper.list(app)) == 1


async def test_an_acme_certificate_comes_in_the_same_way(stage: Stage, tmp_path: Path) -> None:
    app = await stage.platform.create_app("foo")
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store)
    await keeper.start()
    chain, key = self_signed(["foo.localhost"])
    endpoint = await keeper.install(app, chain, key, source=CertificateSource.ACM)
    assert endpoint.source == "acm"


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (lambda: (self_signed(["foo.localhost"])[0], self_signed(["x"])[1]), "does not match"),
        (
            lambda: self_signed(["foo.localhost"], start=NOW - datetime.timedelta(days=60)),
            "expired",
        ),
        (lambda: self_signed(["www.example.com"]), r"covers none of the app's domains"),
        (lambda: ("not a certificate", self_signed(["x"])[1]), "not PEM"),
        (lambda: (self_signed(["foo.localhost"])[0], "no key"), "not a PEM private key"),
        (
            lambda: (
                self_signed(["foo.localhost"], key=ed25519.Ed25519PrivateKey.generate())[0],
                self_signed(["x"])[1],
            ),
            "has a key of type Ed25519: only RSA keys of 2048 to 4096 bits",
        ),
        (
            lambda: self_signed(["foo.localhost"], key=ed25519.Ed25519PrivateKey.generate()),
            "must be one of RSA keys of 2048 to 4096 bits",
        ),
        (
            lambda: self_signed(["foo.localhost"], key=rsa.generate_private_key(65537, 1024)),
            "has an RSA key of 1024 bits",
        ),
        (
            lambda: self_signed(["foo.localhost"], key=rsa.generate_private_key(65537, 4160)),
            "has an RSA key of 4160 bits",
        ),
        (
            lambda: self_signed(["foo.localhost"], key=ec.generate_private_key(ec.SECP521R1())),
            "has an EC key on secp521r1: only .* P-256 or P-384",
        ),
        (
            lambda: (
                self_signed(["foo.localhost"])[0],
                self_signed(["x"], key=rsa.generate_private_key(65537, 2048))[1],
            ),
            "does not match",
        ),
    ],
)
async def test_a_certificate_that_cannot_serve_the_app_is_refused_and_changes_nothing(
    stage: Stage, tmp_path: Path, make: object, refusal: str
) -> None:
    app = await stage.platform.create_app("foo")
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store)
    await keeper.start()
    chain, key = make()  # type: ignore[operator]
    with pytest.raises(UserError, match=refusal) as caught:
        await keeper.install(app, chain, key)
    assert key not in str(caught.value)
    assert await keeper.list(app) == []
    assert not list((tmp_path / "tls" / "own").iterdir())


async def test_custom_domains_get_certificates_and_own_ones_serve_those_they_cover(
    stage: Stage, tmp_path: Path
) -> None:
    app = await stage.platform.create_app("foo")
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store)
    await keeper.start()
    keeper.set_custom_domains(app, ["www.example.com", "api.example.com"])
    assert ("www.example.com",) in [c.names for c in keeper.served]
    with pytest.raises(UserError, match=r"covers none of the app's domains"):
        await keeper.install(app, *self_signed(["shop.example.org"]))
    endpoint = await keeper.install(app, *self_signed(["www.example.com", "bar.localhost"]))
    # Served for the app's host it covers, never for another app's (bar.localhost).
    assert [c.names for c in keeper.served if c.own] == [("www.example.com",)]
    assert keeper.serving(app) == {"www.example.com": endpoint}
    keeper.set_custom_domains(app, ["api.example.com"])  # www.example.com removed
    assert [c.names for c in keeper.served if c.own] == []
    assert keeper.serving(app) == {}


async def test_certificates_near_their_end_are_issued_again(stage: Stage, tmp_path: Path) -> None:
    await stage.platform.create_app("foo")
    clock = [NOW]
    keeper = Certificates(tmp_path / "tls", "localhost", stage.store, clock=lambda: clock[0])
    await keeper.start()
    path = Path(keeper.served[1].chain_path)
    first = path.read_bytes()
    keeper.refresh()
    assert path.read_bytes() == first  # a year to go: kept
    clock[0] = NOW + tls_files.LEAF_LIFETIME - datetime.timedelta(days=10)
    keeper.refresh()
    renewed = x509.load_pem_x509_certificates(path.read_bytes())[0]
    assert renewed.not_valid_after_utc > clock[0] + datetime.timedelta(days=300)
