"""What the router adds and removes on the way through, as Heroku's router does.

To the dyno: ``X-Request-Id`` (the client's if it looks like one, else a new uuid4),
``X-Forwarded-For`` (the client's address appended), ``X-Forwarded-Proto``,
``X-Forwarded-Port``, ``X-Request-Start`` (ms since the epoch) and ``Via``. A client's own
``X-Forwarded-Proto``/``-Port``/``X-Request-Start`` are dropped: only the router may say them.
So are the other headers frameworks read for the scheme or the client's address
(``X-Forwarded-Ssl``, ``X-Forwarded-Scheme``, ``Forwarded``: ``_CLAIMS``), and any header
whose name, with ``_`` for ``-``, is one of these or one the router sets or rebuilds
(``X_Forwarded_Proto``, ``X-Request_Id``): servers that turn header names into CGI variables
(``HTTP_X_FORWARDED_PROTO``: uWSGI, PHP, gunicorn before 22) read both spellings as one
header, the client's value first.
Hop-by-hop headers are removed both ways, and so are the headers a ``Connection`` header
names, except the ones that frame or route the message and the ones the router writes itself
(``UNREMOVABLE_REQUEST``): a client that lists ``Content-Length`` in ``Connection`` must not
make the router send the body without its length, which a dyno would read as a request the
router never saw. The router writes the request's ``Content-Length`` itself, from the number
it parsed, so what the dyno reads as the body is what the router counted as the body. Pure
functions: the caller passes the clock reading and the id factory.

Both run for every request, so they write the head in one pass over the headers, straight
into the list of pieces that becomes it: one length check per header, and for a name of a
length some special header has, one lower-casing and one set lookup. The underscore spellings
are in that set too (every mix of ``-`` and ``_``, made once at import), so they cost an
ordinary header nothing: their lengths are those of the names they spell.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dynos.router.http import HOP_BY_HOP, BodyKind, Headers, connection_tokens

VIA = b"1.1 dynos"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9+/=-]{20,200}")
_SET_BY_ROUTER = frozenset({b"x-forwarded-proto", b"x-forwarded-port", b"x-request-start"})
# Headers the router rebuilds from the client's values (collected, then written once).
_REBUILT = frozenset({b"x-request-id", b"x-forwarded-for", b"via"})
# Every request header the router writes itself (_ROUTER_TAIL, framing, tunnels).
ROUTER_REQUEST_HEADERS = _SET_BY_ROUTER | _REBUILT | {b"content-length", b"transfer-encoding"}
# What a name in the client's Connection header never removes: framing, routing, the router's
# own headers (RFC 9110 §7.6.1 has a proxy drop the fields Connection names; a sender must
# not name these, so the router ignores such a name rather than obey it).
UNREMOVABLE_REQUEST = ROUTER_REQUEST_HEADERS | {b"host", b"connection", b"upgrade"}
# The same for a dyno's response: its framing, and the Via the router extends.
UNREMOVABLE_RESPONSE = frozenset({b"content-length", b"transfer-encoding", b"via", b"connection"})
# Other ways a client could tell the app how the request came, which apps trust because a
# router in front would have set them: X-Forwarded-Ssl (Rack's ssl? reads it before
# X-Forwarded-Proto), X-Forwarded-Scheme (Rack 2), Forwarded (RFC 7239: proto=, for=; Rack 3
# reads it first). Heroku's router sets none of them: under these names an app there reads
# only what a client said. Here they are dropped, so an app that trusts them (Rack does, by
# default) is not told HTTPS, or another address, by a client on the plain-HTTP port.
# X-Forwarded-Host is passed on, as Heroku's router does (its documented headers are the six
# of _ROUTER_TAIL): it says nothing of the scheme or the client's address, the Host header
# still routes the request, an app behind a CDN reads it, and frameworks trust it only when
# told to (Django's USE_X_FORWARDED_HOST), the app's choice to make knowing it is client-set.
_CLAIMS = frozenset({b"x-forwarded-ssl", b"x-forwarded-scheme", b"forwarded"})


def _underscore_spellings(names: frozenset[bytes]) -> frozenset[bytes]:
    """Each name of ``names`` with some or all of its ``-`` written ``_`` (not the name itself:
    ``x_forwarded-for``, ``x-forwarded_for``, ``x_forwarded_for`` for ``x-forwarded-for``)."""
    spellings: set[bytes] = set()
    for name in names:
        words = name.split(b"-")
        mixes = [words[0]]
        for word in words[1:]:
            mixes = [mix + sep + word for mix in mixes for sep in (b"-", b"_")]
        spellings.update(mixes)
    return frozenset(spellings - names)


# A client header under one of these names is dropped, whatever it says.
_DROPPED = _SET_BY_ROUTER | _CLAIMS | _underscore_spellings(_SET_BY_ROUTER | _REBUILT | _CLAIMS)
# Request headers that need more than copying: one lookup tells the common ones apart.
_REQUEST_SPECIAL = HOP_BY_HOP | _DROPPED | _REBUILT | {b"host", b"content-length"}
_RESPONSE_SPECIAL = HOP_BY_HOP | {b"via"}
# Connection options that remove nothing more (hop-by-hop headers are dropped anyway).
_NOT_OPTIONS_REQUEST = HOP_BY_HOP | UNREMOVABLE_REQUEST
_NOT_OPTIONS_RESPONSE = HOP_BY_HOP | UNREMOVABLE_RESPONSE
_MAX_LENGTH_DIGITS = 18  # a body up to an exabyte: int() stays a machine word
# A header whose name has none of these lengths is copied without lower-casing it.
_REQUEST_LENGTHS = frozenset(len(name) for name in _REQUEST_SPECIAL)
_RESPONSE_LENGTHS = frozenset(len(name) for name in _RESPONSE_SPECIAL)
_ROUTER_TAIL = (
    b"X-Request-Id: %s\r\nX-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n"
    b"X-Forwarded-Port: %d\r\nX-Request-Start: %d\r\nVia: %s\r\n"
)


class MalformedRequest(ValueError):
    """The request cannot be forwarded as it is; the client gets ``status`` (400, 414, 431)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class ForwardedRequest:
    """The request head for the dyno and what the router log line needs from it."""

    __slots__ = ("body", "content_length", "forwarded_for", "head", "host", "request_id")

    def __init__(
        self,
        head: bytes,
        host: str,
        request_id: str,
        forwarded_for: str,
        body: BodyKind,
        content_length: int = -1,
    ) -> None:
        self.head = head
        self.host = host  # the Host header, "" when absent
        self.request_id = request_id
        self.forwarded_for = forwarded_for  # as sent to the dyno (Heroku logs it as fwd)
        self.body = body
        self.content_length = content_length  # the body's length (LENGTH bodies), else -1


def valid_request_id(value: bytes) -> bool:
    """Whether a client's ``X-Request-Id`` may be kept: 20 to 200 of ``[A-Za-z0-9+/=-]``."""
    return _REQUEST_ID.fullmatch(value) is not None


def _without_options(parts: list[bytes], start: int, options: set[bytes]) -> list[bytes]:
    """``parts`` (header lines from ``start``, four pieces each) less the ``options`` named."""
    kept = parts[:start]
    for i in range(start, len(parts), 4):
        if parts[i].lower() not in options:
            kept += parts[i : i + 4]
    return kept


def forward_request(
    method: bytes,
    target: bytes,
    headers: Headers,
    *,
    client_ip: str,
    router_port: int,
    request_start_ms: int,
    new_request_id: Callable[[], str],
    upgrade: bytes = b"",
    https: bool = False,
) -> ForwardedRequest:
    """The request head to send to a dyno for a client's request.

    The body keeps its framing, except that a chunked body is re-chunked by the proxy, so the
    head says ``Transfer-Encoding: chunked`` again. ``upgrade``: the protocol the request asks
    to switch to, when the router tunnels it (``websocket``); the dyno then sees
    ``Connection: Upgrade`` and ``Upgrade`` too.

    Raises ``MalformedRequest`` for a second ``Host`` header (RFC 9112 §3.2: the router and
    the dyno must not disagree on the app), for a transfer coding other than ``chunked``
    alone (a coding the router would drop, or that the dyno may read another way), and for
    any framing that could be read two ways (RFC 9112 §6.3): a ``Content-Length`` that is not
    a number, two of them, or one with ``Transfer-Encoding``. (httptools refuses these too;
    the router does not forward a body on another parser's word alone.)
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    options: set[bytes] | None = None
    host = b""
    request_id = b""
    forwarded = b""
    via = b""
    body = BodyKind.NONE
    length = -1
    for name, value in headers:
        if len(name) not in _REQUEST_LENGTHS:
            parts += (name, b": ", value, b"\r\n")
            continue
        lname = name.lower()
        if lname not in _REQUEST_SPECIAL:
            parts += (name, b": ", value, b"\r\n")
        elif lname == b"host":
            if host:
                raise MalformedRequest("more than one Host header")
            host = value
            parts += (name, b": ", value, b"\r\n")
        elif lname == b"content-length":
            if body is not BodyKind.NONE:
                raise MalformedRequest("a second Content-Length, or one with Transfer-Encoding")
            length = _content_length(value)
            body = BodyKind.LENGTH  # written in the tail, from the number
        elif lname == b"transfer-encoding":
            if value.strip().lower() != b"chunked" or body is not BodyKind.NONE:
                raise MalformedRequest("a transfer coding other than chunked, or two framings")
            body = BodyKind.CHUNKED
        elif lname == b"connection":
            tokens = connection_tokens(value) - _NOT_OPTIONS_REQUEST
            if tokens:
                options = tokens if options is None else options | tokens
        elif lname == b"x-request-id":
            request_id = value.strip()
        elif lname == b"x-forwarded-for":
            value = value.strip()
            forwarded = forwarded + b", " + value if forwarded else value
        elif lname == b"via":
            value = value.strip()
            via = via + b", " + value if via else value
        # other hop-by-hop headers, and _DROPPED (those only the router may say), are dropped
    if options:
        parts = _without_options(parts, 4, options)

    rid = request_id.decode("ascii") if request_id and valid_request_id(request_id) else ""
    if not rid:
        rid = new_request_id()
    ip = client_ip.encode("ascii")
    forwarded_for = forwarded + b", " + ip if forwarded else ip
    parts.append(
        _ROUTER_TAIL
        % (
            rid.encode("ascii"),
            forwarded_for,
            b"https" if https else b"http",
            router_port,
            request_start_ms,
            via + b", " + VIA if via else VIA,
        )
    )
    if body is BodyKind.CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif body is BodyKind.LENGTH:
        parts.append(b"Content-Length: %d\r\n" % length)
    if upgrade:
        parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    parts.append(b"\r\n")
    return ForwardedRequest(
        b"".join(parts),
        host.decode("latin-1"),
        rid,
        forwarded_for.decode("latin-1"),
        body,
        length,
    )


def _content_length(value: bytes) -> int:
    """A ``Content-Length`` value as a number (RFC 9110 §8.6: 1*DIGIT, around it OWS)."""
    digits = value.strip(b" \t")
    if not digits.isdigit() or len(digits) > _MAX_LENGTH_DIGITS:
        raise MalformedRequest("a Content-Length that is not one number")
    return int(digits)


def forward_response_head(
    status: int,
    reason: bytes,
    headers: Headers,
    *,
    chunked: bool,
    keep_alive: bool,
    http10_client: bool,
    upgrade: bytes = b"",
) -> bytes:
    """The response head to send to the client for a dyno's response (or 1xx interim one).

    ``chunked``: the router frames the body as chunks. ``keep_alive``: the client connection
    stays open after this response (said explicitly to an HTTP/1.0 client, which closes by
    default; ``Connection: close`` otherwise when it does not). ``upgrade``: a 101 the router
    tunnels, which says ``Connection: Upgrade`` and ``Upgrade`` again.
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    options: set[bytes] | None = None
    via = b""
    for name, value in headers:
        if len(name) not in _RESPONSE_LENGTHS:
            parts += (name, b": ", value, b"\r\n")
            continue
        lname = name.lower()
        if lname not in _RESPONSE_SPECIAL:
            parts += (name, b": ", value, b"\r\n")
        elif lname == b"connection":
            tokens = connection_tokens(value) - _NOT_OPTIONS_RESPONSE
            if tokens:
                options = tokens if options is None else options | tokens
        elif lname == b"via":
            value = value.strip()
            via = via + b", " + value if via else value
    if options:
        parts = _without_options(parts, 1, options)
    parts.append(b"Via: " + (via + b", " + VIA if via else VIA) + b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade:
        parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    elif status >= 200:
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        elif http10_client:
            parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
