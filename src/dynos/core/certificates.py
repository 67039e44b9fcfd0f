"""Rules about TLS certificates, without reading one: which host names a server needs a
certificate for, whether a certificate's names cover a host, which certificate answers a
server name (SNI), and whether a certificate a user brings may be installed.

Certificates themselves are parsed by ``platform/certificates.py`` (with ``cryptography``);
what it learns is handed here as ``CertificateFacts``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dynos.errors import UserError

# RFC 1123 labels: letters, digits and inner hyphens, 63 characters at most.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_HOST = 253


class CertificateSource(StrEnum):
    """Where an app's certificate came from: a user's upload (``certs:add``) or ACME."""

    OWN = "own"  # sni-endpoints, dynos certs:add
    ACM = "acm"  # automatic certificates (certs:auto)


def valid_hostname(name: str) -> bool:
    """A DNS host name (lower case, no trailing dot), as SNI and Host carry them."""
    if not name or len(name) > MAX_HOST:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def normalize_host(name: str) -> str:
    """A Host header or server name as the certificate rules compare it: lower case, no port,
    no trailing dot."""
    host = name.strip().lower()
    if host.startswith("["):  # an IPv6 literal has no certificate name here
        return host
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".")


def wildcard_useful(domain: str) -> bool:
    """Whether ``*.<domain>`` is a certificate name clients accept for the app hosts.

    TLS clients (curl, git, Python, browsers) refuse a wildcard whose remainder is a single
    label (``*.localhost``, ``*.com``): it would match too much. So the server issues a
    certificate per host where the domain has one label.
    """
    return len(domain.split(".")) >= 2


def app_host(app: str, domain: str) -> str:
    return f"{app}.{domain}"


def git_host(domain: str) -> str:
    return f"git.{domain}"


def names_match(pattern: str, host: str) -> bool:
    """Whether the certificate name ``pattern`` covers ``host`` (RFC 6125 §6.4.3, as clients
    apply it): equal, or a ``*.`` wildcard standing for exactly one leftmost label, never
    for a single-label remainder."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    rest = pattern[2:]
    if "." not in rest:
        return False
    head, _, tail = host.partition(".")
    return bool(head) and tail == rest


def covers(names: Iterable[str], host: str) -> bool:
    return any(names_match(name, host) for name in names)


def uncovered(names: Sequence[str], hosts: Iterable[str]) -> list[str]:
    """The hosts of ``hosts`` that none of the certificate names ``names`` covers."""
    return [host for host in hosts if not covers(names, host)]


@dataclass(frozen=True)
class CertificateFacts:
    """What ``platform/certificates.py`` read from a certificate chain and its key."""

    names: tuple[str, ...]  # the leaf's DNS names (subjectAltName, else its common name)
    not_before: datetime.datetime
    not_after: datetime.datetime
    key_matches: bool  # the private key is the leaf's
    subject: str
    issuer: str
    self_signed: bool
    ca_signed: bool = False  # its chain leads to a CA this machine trusts
    # The leaf's public key: "RSA", "EC" or another algorithm's name, and its size (RSA: the
    # modulus's bits) or curve (EC: "secp256r1"...). Defaults for a stored chain, never checked.
    key_type: str = "RSA"
    key_size: int = 2048
    key_curve: str = ""


# What a user's certificate key may be. The router's one event loop signs every handshake of
# the host: an RSA key of 16384 bits would cost it a slow signature each time.
ACCEPTED_KEYS = "RSA keys of 2048 to 4096 bits, or EC (ECDSA) keys on P-256 or P-384"
RSA_BITS = (2048, 4096)
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


def key_refusal(key_type: str, key_size: int, key_curve: str) -> str | None:
    """Why a certificate's key cannot serve (a message naming what is accepted), or None."""
    if key_type == "RSA" and RSA_BITS[0] <= key_size <= RSA_BITS[1]:
        return None
    if key_type == "EC" and key_curve in EC_CURVES:
        return None
    have = {"RSA": f"an RSA key of {key_size} bits", "EC": f"an EC key on {key_curve}"}.get(
        key_type, f"a key of type {key_type}"
    )
    return f"The certificate has {have}: only {ACCEPTED_KEYS} are accepted. Issue it for one."


def check_installable(
    facts: CertificateFacts,
    now: datetime.datetime,
    hosts: Sequence[str],
    *,
    pinned: Sequence[str] = (),
) -> None:
    """Raise UserError (422) when a user's certificate cannot serve the app at ``now``;
    return None when it can. ``hosts``: the app's hostnames (its own and its custom domains),
    of which the certificate must cover one at least; ``pinned``: the domains that chose
    this certificate (an update must still cover each)."""
    refusal = key_refusal(facts.key_type, facts.key_size, facts.key_curve)
    if refusal is not None:
        raise UserError(refusal)
    if not facts.key_matches:
        raise UserError(
            "The private key does not match the certificate: pass the key the certificate "
            "was issued for (the first certificate of the chain must be the server's)."
        )
    if facts.not_after <= now:
        raise UserError(
            f"The certificate expired at {facts.not_after.isoformat()}: renew it with its "
            "issuer and add the new one."
        )
    if facts.not_before > now:
        raise UserError(
            f"The certificate is not valid before {facts.not_before.isoformat()}: add it "
            "from then on."
        )
    have = ", ".join(facts.names) or "no DNS name"
    missing = uncovered(facts.names, pinned)
    if missing:
        raise UserError(
            f"The certificate does not cover {', '.join(missing)} (it names {have}), which "
            "uses the certificate it replaces: issue one that names it too, or move the "
            "domain to another certificate first (domains:update --cert)."
        )
    if len(uncovered(facts.names, hosts)) == len(hosts):
        raise UserError(
            f"The certificate covers none of the app's domains ({', '.join(hosts)}; it names "
            f"{have}): add the domain first (domains:add), or issue a certificate whose "
            "subjectAltName lists it."
        )


@dataclass(frozen=True)
class AppCertificate:
    """One of an app's certificates (its own or ACM's), as ``assign`` weighs it."""

    id: str
    names: tuple[str, ...]  # the leaf's DNS names
    acm: bool
    installed: datetime.datetime  # when it was stored or last replaced


def assign(
    hosts: Sequence[str], certificates: Sequence[AppCertificate], pins: Mapping[str, str]
) -> dict[str, str]:
    """Which of an app's certificates serves each of its ``hosts``: host -> certificate id.
    A host left out is served with the platform's certificate.

    For each host: ACM's certificate when it covers the host (ACM, once on, manages the
    app's certificates, as Heroku's does); else the one the domain chose (``pins``: host ->
    id, by ``domains:update --cert`` or ``certs:add``'s question), while it covers the host;
    else the app's certificate that names the host exactly, then by a wildcard, the newest
    first; else none."""
    chosen: dict[str, str] = {}
    by_id = {cert.id: cert for cert in certificates}
    # Times are to the second: of two stored in the same one, the later listed is newer.
    order = sorted(range(len(certificates)), key=lambda i: (certificates[i].installed, i))
    newest_first = [certificates[i] for i in reversed(order)]
    for host in hosts:
        acm = [c for c in certificates if c.acm and covers(c.names, host)]
        pinned = by_id.get(pins.get(host, ""))
        if acm:
            chosen[host] = acm[0].id
        elif pinned is not None and covers(pinned.names, host):
            chosen[host] = pinned.id
        else:
            exact = [c for c in newest_first if host in (n.lower() for n in c.names)]
            wild = [c for c in newest_first if covers(c.names, host)]
            if exact or wild:
                chosen[host] = (exact or wild)[0].id
    return chosen


@dataclass(frozen=True)
class ServedCertificate:
    """A certificate the router may present: its names and where the router loads it."""

    names: tuple[str, ...]
    chain_path: str  # PEM: the leaf, then its intermediates
    key_path: str  # PEM, 0600
    own: bool  # an app's own (or ACME) certificate, chosen before the platform's issued one


def choose(certificates: Iterable[ServedCertificate], host: str) -> ServedCertificate | None:
    """The certificate that answers the server name ``host``: an app's own before one the
    platform issued, an exact name before a wildcard. None: none covers it."""
    best: ServedCertificate | None = None
    best_rank = -1
    for cert in certificates:
        for name in cert.names:
            if not names_match(name, host):
                continue
            rank = (2 if cert.own else 0) + (1 if name.lower() == host else 0)
            if rank > best_rank:
                best, best_rank = cert, rank
    return best


def certificate_table(
    certificates: Iterable[ServedCertificate],
) -> dict[str, ServedCertificate]:
    """Exact host name -> the certificate ``choose`` would pick for it, for the names that
    appear in certificates (wildcards stay for ``choose`` to resolve)."""
    listed = list(certificates)
    hosts = {name.lower() for cert in listed for name in cert.names if not name.startswith("*")}
    table: dict[str, ServedCertificate] = {}
    for host in hosts:
        chosen = choose(listed, host)
        if chosen is not None:
            table[host] = chosen
    return table
