"""Log drains' rules: which URLs may be added, and which addresses a drain may reach.

A drain is a URL an app's log lines are sent to: ``https://`` and ``http://`` (Heroku's
logplex HTTP format, core/drain_frames.py) or ``syslog://`` and ``syslog+tls://`` (RFC 5424
over TCP). Its URL is the tenant's input, and the server connects to it: so a URL is checked
when it is added (its form, and its host when it is an address), and every address its host
resolves to is checked again before each connection (the name may point anywhere by then).

Never reachable: the unspecified, multicast and broadcast addresses. Reachable only when the
server allows it (``--drains-allow-loopback``, for tests and single-machine setups): loopback
(the platform's own API, git service, add-on servers and the dynos' ports listen there) and
link-local (cloud metadata services answer at 169.254.169.254), and the machine's own
interface addresses, its LAN address among them (every port listening on all interfaces,
the dynos' too, answers there as on loopback, without the router; the shell reads them at
each connection and passes them in). Private networks (10/8, 192.168/16 ...) are allowed: a
log server on another machine of the LAN is a normal target.
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from dynos.errors import NotFound, UserError

DEFAULT_PORTS = {"https": 443, "http": 80, "syslog": 514, "syslog+tls": 6514}
MAX_URL = 2048
MAX_DRAINS = 5  # per app, as Heroku's limit for drains added by hand
# Drain ids are the same on every server for the same app and URL: a uuid5 of the pair.
_DRAIN_IDS = uuid.UUID("0c1f7a4e-52b9-4b5e-9d07-3c2f61a0e8d4")
T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class DrainTarget:
    """A checked drain URL, as delivery needs it."""

    url: str
    scheme: str  # a key of DEFAULT_PORTS
    host: str  # a name, or an address literal (IPv6 without brackets)
    port: int
    target: str  # HTTP: the path and query sent in the request line ("/" at least)
    username: str | None  # HTTP: basic authentication from the URL's userinfo
    password: str | None

    @property
    def http(self) -> bool:
        return self.scheme in ("https", "http")

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "syslog+tls")


def drain_id(app_id: str, url: str) -> str:
    return str(uuid.uuid5(_DRAIN_IDS, f"{app_id}/{url}"))


def parse_drain_url(url: object) -> DrainTarget:
    """The drain ``url`` checked; UserError with what to fix otherwise."""
    if not isinstance(url, str) or not url:
        raise UserError("A drain needs a URL: https://, http://, syslog:// or syslog+tls://.")
    if len(url) > MAX_URL:
        raise UserError(f"The drain URL is longer than {MAX_URL} characters.")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UserError(
            "The drain URL has spaces, control or non-ASCII characters: percent-encode them."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"The drain URL {url} is not a valid URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UserError(
            f"The drain URL {url} has the scheme {parts.scheme or '(none)'}: use https://, "
            "http://, syslog:// or syslog+tls://."
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UserError(f"The drain URL {url} names no host.")
    if port == 0:
        raise UserError(f"The drain URL {url} has port 0: name the port its receiver listens on.")
    _check_host_form(url, host)
    if not scheme.startswith("http") and (parts.username or parts.password):
        raise UserError(f"The syslog drain URL {url} has a user or password: syslog has none.")
    return DrainTarget(
        url=url,
        scheme=scheme,
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        target=_request_target(parts),
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _check_host_form(url: str, host: str) -> None:
    if host.startswith("[") or "%" in host:
        raise UserError(f"The drain URL {url} has a malformed host (zone ids are refused).")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or not all(
        0 < len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label) for label in labels
    ):
        raise UserError(f"The drain URL {url} has the host {host!r}, which is not a hostname.")


def _request_target(parts: SplitResult) -> str:
    target = parts.path or "/"
    return f"{target}?{parts.query}" if parts.query else target


def refused_address(
    address: Address, *, allow_loopback: bool, own: Collection[Address] = ()
) -> str | None:
    """Why a drain may not connect to ``address``, or None when it may. ``own``: this
    machine's interface addresses, read by the caller (its LAN address reaches every port the
    server and the dynos listen on, as loopback does, without passing the router)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_unspecified or address.is_multicast:
        return f"{address} is not a host a drain can send to"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return f"{address} is the broadcast address"
    if (address.is_loopback or address.is_link_local) and not allow_loopback:
        kind = "a loopback" if address.is_loopback else "a link-local"
        return (
            f"{address} is {kind} address: the server's own services listen there, so drains "
            "may not reach it (a server started with --drains-allow-loopback allows it)"
        )
    if address in own and not allow_loopback:
        return (
            f"{address} is an address of this server: its services and the dynos' ports listen "
            "there, so drains may not reach it (a server started with --drains-allow-loopback "
            "allows it)"
        )
    return None


def check_target(
    target: DrainTarget, *, allow_loopback: bool, own: Collection[Address] = ()
) -> None:
    """Refuse, when the drain is added, a host that is a refused address or a loopback name
    (its resolved addresses are checked again before each connection); ``own`` as for
    :func:`refused_address`."""
    name = target.host.lower()
    if not allow_loopback and (name == "localhost" or name.endswith(".localhost")):
        raise UserError(
            f"The drain URL {target.url} names {target.host}, a loopback host: the server's "
            "own services listen there, so drains may not reach it (a server started with "
            "--drains-allow-loopback allows it)."
        )
    address = literal_address(target.host)
    if address is None:
        return
    reason = refused_address(address, allow_loopback=allow_loopback, own=own)
    if reason is not None:
        raise UserError(f"The drain URL {target.url} is refused: {reason}.")


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells, also in the legacy IPv4 forms resolvers accept
    (``127.1``, ``0x7f000001``, ``2130706433``); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def pick_drain(drains: list[T], query: str, keys: list[tuple[str, str, str]]) -> T:
    """The drain whose id, URL or token is ``query`` (``keys`` holds each drain's three, in
    the order of ``drains``); NotFound otherwise."""
    for drain, (id_, url, token) in zip(drains, keys, strict=True):
        if query in (id_, url, token):
            return drain
    raise NotFound(f"No drain {query} on this app: `drains -a APP` lists its URLs and tokens.")
