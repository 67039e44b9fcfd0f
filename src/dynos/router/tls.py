"""The router's TLS: the server context of its HTTPS port and the choice of certificate by
server name (SNI).

The router is told which certificates to serve (``update``, a list of
``core.certificates.ServedCertificate``: names and files, from platform/certificates.py or,
in a router process, from the server's ``{"certificates": ...}`` message), and picks one per
handshake in ``_pick`` (the SNI callback): an app's own before one the platform issued, an
exact name before a wildcard (``core.certificates.choose``). A name no certificate covers
(or no name at all) gets the default: the platform's certificate for ``git.<domain>`` (and
``*.<domain>`` where that is allowed). Each certificate's ``SSLContext`` is made on its first
handshake and kept while its files stay the same.

Settings: TLS 1.2 and 1.3 only, Mozilla's "intermediate" cipher list for TLS 1.2 (TLS 1.3's
suites are all acceptable), no compression, no renegotiation, ALPN ``http/1.1`` (the router
speaks HTTP/1.1 only). Session resumption: session tickets (one per TLS 1.3 handshake); their
keys live in the process, so a client resumes with the process that
served it, and a restart makes everyone handshake again.
"""

from __future__ import annotations

import logging
import os
import ssl

from dynos.core.certificates import ServedCertificate, choose, normalize_host

log = logging.getLogger(__name__)

# https://ssl-config.mozilla.org/ "intermediate" (version 5.7), TLS 1.2 suites.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)


def server_context() -> ssl.SSLContext:
    """A server context with the router's settings, and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # Mozilla's intermediate profile lets the client choose among these suites.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    # One TLS 1.3 session ticket per full handshake, not OpenSSL's two: each costs about
    # 20 us of the handshake's 280 (docs/performance.md), and a client resuming gets a new one.
    context.num_tickets = 1
    return context


class RouterTls:
    """The certificates one router process serves, and its listening ``context``."""

    def __init__(self) -> None:
        self._certificates: list[ServedCertificate] = []
        self._exact: dict[str, ServedCertificate] = {}
        self._default: ServedCertificate | None = None
        self._contexts: dict[tuple[str, int], ssl.SSLContext] = {}
        self._versions: dict[str, int] = {}  # chain path -> its file's mtime when told
        self.context = server_context()
        self.context.sni_callback = self._pick

    @property
    def ready(self) -> bool:
        return self._default is not None

    def update(self, certificates: list[ServedCertificate]) -> None:
        """Serve ``certificates`` from the next handshake on. The first that is not an
        app's own is the default (the server lists ``git.<domain>``'s first)."""
        self._certificates = list(certificates)
        versions: dict[str, int] = {}
        for cert in self._certificates:
            try:
                versions[cert.chain_path] = os.stat(cert.chain_path).st_mtime_ns
            except OSError:
                versions[cert.chain_path] = 0
        self._versions = versions
        self._contexts = {
            key: ctx for key, ctx in self._contexts.items() if versions.get(key[0]) == key[1]
        }
        exact: dict[str, ServedCertificate] = {}
        for cert in self._certificates:
            for name in cert.names:
                if not name.startswith("*"):
                    exact.setdefault(name, cert)
        self._exact = {host: choose(self._certificates, host) or c for host, c in exact.items()}
        platform = [c for c in self._certificates if not c.own]
        self._default = platform[0] if platform else None
        if self._default is not None:
            # The listening context answers clients that send no server name.
            self._load(self._default, self.context)

    def certificate_for(self, server_name: str | None) -> ServedCertificate | None:
        if server_name is None:
            return self._default
        host = normalize_host(server_name)
        found = self._exact.get(host)
        if found is None:
            found = choose(self._certificates, host)  # a wildcard, or nothing
        return found if found is not None else self._default

    def _pick(
        self, connection: ssl.SSLObject, server_name: str | None, _initial: ssl.SSLContext
    ) -> None:
        """The SNI callback: switch the handshake to the certificate for ``server_name``."""
        cert = self.certificate_for(server_name)
        if cert is None or cert is self._default:
            return None
        try:
            connection.context = self._context_of(cert)
        except (OSError, ssl.SSLError) as exc:  # a file gone between update and handshake
            log.error("router: cannot load the certificate %s: %s", cert.chain_path, exc)
        return None

    def _context_of(self, cert: ServedCertificate) -> ssl.SSLContext:
        key = (cert.chain_path, self._versions.get(cert.chain_path, 0))
        context = self._contexts.get(key)
        if context is None:
            context = server_context()
            self._load(cert, context)
            self._contexts[key] = context
        return context

    @staticmethod
    def _load(cert: ServedCertificate, context: ssl.SSLContext) -> None:
        context.load_cert_chain(cert.chain_path, cert.key_path)


def to_json(certificates: list[ServedCertificate]) -> list[list[object]]:
    """The certificates as a router process receives them (file paths, no key material)."""
    return [[list(c.names), c.chain_path, c.key_path, c.own] for c in certificates]


def from_json(data: list[list[object]]) -> list[ServedCertificate]:
    return [
        ServedCertificate(
            tuple(str(n) for n in names),  # type: ignore[attr-defined]
            str(chain),
            str(key),
            bool(own),
        )
        for names, chain, key, own in data
    ]
