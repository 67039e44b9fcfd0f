"""The Postgres cluster's SSL certificate, made here: Heroku's apps connect with
``sslmode=require``, which encrypts without checking whom it talks to, so a self-signed
certificate for 127.0.0.1 and localhost is what they need (valid ten years, an EC P-256 key).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(directory: Path) -> None:
    """A self-signed certificate for 127.0.0.1 and localhost (server.crt, server.key 0600):
    libpq's ``sslmode=require`` encrypts without checking it, as Heroku's apps do."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dynos postgres")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write_private(directory / "server.key", key_pem, 0o600)
    write_private(
        directory / "server.crt", certificate.public_bytes(serialization.Encoding.PEM), 0o600
    )


def write_private(path: Path, content: bytes, mode: int) -> None:
    """Replace ``path`` with ``content``, never readable beyond ``mode`` even for a moment."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
