"""The platform's certificate authority and the certificates it issues, as files and keys:
made and read with ``cryptography``, written under ``<home>/tls/`` (``HomePaths.tls``).

    <home>/tls/ca.pem              the CA certificate (what clients trust: `dynos certs:ca`)
    <home>/tls/ca.key              its key, 0600: the server's only
    <home>/tls/issued/HOST.pem     a leaf for one host, then the CA certificate
    <home>/tls/issued/HOST.key     its key, 0600
    <home>/tls/own/ID.pem|.key     an app's own (or ACME) certificate, written from the store

Keys are EC P-256: a handshake signs with the server's key, and an ECDSA signature costs a
small fraction of an RSA-2048 one. The CA lives ten years, a leaf 397 days (the longest a
browser accepts), issued again when it has less than 30 days left.

Other parts take the CA from here: ``load_ca`` (``heroku run``'s rendezvous listener makes
its certificate with ``issue``) and ``ca_path`` (what a client trusts).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from dynos.core.certificates import ACCEPTED_KEYS, CertificateFacts
from dynos.errors import UserError

CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=397)
RENEW_BEFORE = datetime.timedelta(days=30)
MAX_PEM = 64 * 1024  # a certificate chain or key a user uploads


@dataclass(frozen=True)
class Authority:
    """The platform CA: its certificate and its key (never leaves the server)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``content``, never readable beyond ``mode`` even for a moment
    (written beside it, then renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), mode)  # the umask (077 for a root server) may have cut it
        file.write(content)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_ca(directory: Path, now: datetime.datetime | None = None) -> Authority:
    """The CA in ``directory`` (``ca.pem``, ``ca.key``), made on first call. A CA that has
    less than a year left is made again (its leaves follow, issued anew)."""
    # Others may pass through to ca.pem (public); the keys are 0600 and in 0700 directories.
    directory.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(directory, 0o711)
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        authority = load_ca(directory)
    except (FileNotFoundError, ValueError):
        authority = None
    if authority is not None and authority.certificate.not_valid_after_utc - now > (
        datetime.timedelta(days=365)
    ):
        return authority
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dynos"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"dynos platform CA ({socket.gethostname()})"),
        ]
    )
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key first: a ca.pem never stands without the key that signed it.
    write_private(directory / "ca.key", _key_pem(key))
    write_private(directory / "ca.pem", certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return Authority(certificate, key)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only (ECDHE does the key exchange); a CA's key also signs certificates and
    revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def load_ca(directory: Path) -> Authority:
    """The CA made by ``ensure_ca``; FileNotFoundError if there is none yet."""
    certificate = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    return Authority(certificate, key)


def issue(
    authority: Authority,
    hosts: list[str],
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = LEAF_LIFETIME,
) -> tuple[bytes, bytes]:
    """A leaf certificate for ``hosts`` (its subjectAltName, the first also its common
    name) signed by ``authority``: (the chain as PEM: leaf then CA, the key as PEM)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_public = authority.key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(authority.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(min(now + lifetime, authority.certificate.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(authority.key, hashes.SHA256())
    )
    chain = certificate.public_bytes(serialization.Encoding.PEM) + authority.pem
    return chain, _key_pem(key)


def _alt_name(host: str) -> x509.GeneralName:
    """An IP literal as an IP address name (clients check an IP host against those only),
    anything else as a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def needs_issuing(chain_path: Path, authority: Authority, now: datetime.datetime) -> bool:
    """Whether the issued certificate at ``chain_path`` is missing, near its end, or from
    another CA (one made again)."""
    try:
        leaf = x509.load_pem_x509_certificates(chain_path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return True
    if leaf.issuer != authority.certificate.subject:
        return True
    try:
        leaf.verify_directly_issued_by(authority.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return True
    return leaf.not_valid_after_utc - now < RENEW_BEFORE


# ---- a user's certificate --------------------------------------------------------------------


@dataclass(frozen=True)
class Uploaded:
    """A certificate chain and key a user sent, parsed (the chain as they sent it, PEM)."""

    chain: list[x509.Certificate]
    key_pem: bytes
    facts: CertificateFacts

    @property
    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def read_upload(chain_pem: str, key_pem: str) -> Uploaded:
    """Parse a user's ``certificate_chain`` and ``private_key`` (PEM text); UserError saying
    what is wrong with them. The key is kept only as PEM without a passphrase."""
    if len(chain_pem) > MAX_PEM or len(key_pem) > MAX_PEM:
        raise UserError(f"A certificate chain or key over {MAX_PEM // 1024} KB is refused.")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        raise UserError(
            "The certificate chain is not PEM (-----BEGIN CERTIFICATE-----): pass the "
            "certificate file, then its intermediates."
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), None)
    except TypeError:
        raise UserError("The private key has a passphrase: pass it decrypted.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(
            "The private key is not a PEM private key (-----BEGIN PRIVATE KEY-----)."
        ) from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise UserError(f"The private key must be one of {ACCEPTED_KEYS}.")
    if not chain:
        raise UserError("The certificate chain holds no certificate.")
    return Uploaded(
        chain,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        facts_of(chain, key),
    )


def facts_of(
    chain: list[x509.Certificate],
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None,
) -> CertificateFacts:
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        common = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names = tuple(str(a.value) for a in common)
    try:
        public = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):  # an algorithm cryptography cannot read
        public = None
    # The same key whatever its type: the DER SubjectPublicKeyInfo of both, compared.
    matches = key is not None and public is not None and _spki(key.public_key()) == _spki(public)
    key_type, key_size, key_curve = _key_kind(public)
    return CertificateFacts(
        names=tuple(n.lower() for n in names),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        key_matches=matches,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        self_signed=_self_signed(leaf),
        key_type=key_type,
        key_size=key_size,
        key_curve=key_curve,
    )


def _spki(public: object) -> bytes:
    return public.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_kind(public: object) -> tuple[str, int, str]:
    """A public key as core/certificates.py's ``key_refusal`` weighs it."""
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA", public.key_size, ""
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "EC", public.key_size, public.curve.name
    others: list[tuple[type, str]] = [
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (dsa.DSAPublicKey, "DSA"),
    ]
    return next((name for kind, name in others if isinstance(public, kind)), "unknown"), 0, ""


def facts_of_pem(chain_pem: str, now: datetime.datetime) -> CertificateFacts:
    """The facts of a stored chain (its key left out: it was checked when it was added),
    with whether this machine's trusted CAs vouch for it."""
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    facts = facts_of(chain, None)
    return replace(
        facts,
        key_matches=True,
        ca_signed=not facts.self_signed and system_trusted(chain, facts.names, now),
    )


def system_trusted(
    chain: list[x509.Certificate], names: tuple[str, ...], now: datetime.datetime
) -> bool:
    """Whether ``chain`` leads to a CA of the system's trust store (Debian's
    ca-certificates), for its first name, at ``now``: Heroku's "Trusted" column."""
    bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    if not names:
        return False
    try:
        roots = x509.load_pem_x509_certificates(Path(bundle).read_bytes())
        host = "x" + names[0][1:] if names[0].startswith("*.") else names[0]
        verifier = (
            PolicyBuilder().store(Store(roots)).time(now).build_server_verifier(x509.DNSName(host))
        )
        verifier.verify(chain[0], chain[1:])
    except (OSError, ValueError, VerificationError):
        return False
    return True


def _self_signed(leaf: x509.Certificate) -> bool:
    if leaf.issuer != leaf.subject:
        return False
    public = leaf.public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(
                leaf.signature,
                leaf.tbs_certificate_bytes,
                ec.ECDSA(leaf.signature_hash_algorithm),  # type: ignore[arg-type]
            )
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(
                leaf.signature,
                leaf.tbs_certificate_bytes,
                padding.PKCS1v15(),
                leaf.signature_hash_algorithm,  # type: ignore[arg-type]
            )
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(leaf.signature, leaf.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
