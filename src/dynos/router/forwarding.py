"""What the router adds and removes on the way through, as Heroku's router does.

To the dyno: ``X-Request-Id`` (the client's if it looks like one, else a new uuid4),
``X-Forwarded-For`` (the client's address appended), ``X-Forwarded-Proto``,
``X-Forwarded-Port``, ``X-Request-Start`` (ms since the epoch) and ``Via``. A client's own
``X-Forwarded-Proto``/``-Port``/``X-Request-Start`` are dropped: only the router may say them.
Hop-by-hop headers are removed both ways. Pure functions: the caller passes the clock reading
and the id factory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dynos.router.http import (
    HOP_BY_HOP,
    BodyKind,
    Headers,
    connection_tokens,
    request_body_kind,
    serialize_head,
)

VIA = b"1.1 dynos"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9+/=-]{20,200}")
_SET_BY_ROUTER = frozenset({b"x-forwarded-proto", b"x-forwarded-port", b"x-request-start"})
# Headers the router rebuilds from the client's values (collected, then written once).
_REBUILT = frozenset({b"x-request-id", b"x-forwarded-for", b"via"})


class MalformedRequest(ValueError):
    """The request cannot be forwarded as it is; the client gets 400."""


@dataclass(frozen=True, slots=True)
class ForwardedRequest:
    """The request head for the dyno and what the router log line needs from it."""

    head: bytes
    host: str  # the Host header, "" when absent
    request_id: str
    forwarded_for: str  # the X-Forwarded-For sent to the dyno (Heroku logs it as fwd)
    body: BodyKind


def valid_request_id(value: bytes) -> bool:
    """Whether a client's ``X-Request-Id`` may be kept: 20 to 200 of ``[A-Za-z0-9+/=-]``."""
    return _REQUEST_ID.fullmatch(value) is not None


def _drop_connection_options(headers: Headers, options: set[bytes]) -> Headers:
    return [(name, value) for name, value in headers if name.lower() not in options]


def forward_request(
    method: bytes,
    target: bytes,
    headers: Headers,
    *,
    client_ip: str,
    router_port: int,
    request_start_ms: int,
    new_request_id: Callable[[], str],
) -> ForwardedRequest:
    """The request head to send to a dyno for a client's request.

    The body keeps its framing, except that a chunked body is re-chunked by the proxy, so the
    head says ``Transfer-Encoding: chunked`` again. Raises ``MalformedRequest`` for a second
    ``Host`` header (RFC 9112 §3.2: the router and the dyno must not disagree on the app).
    """
    kept: Headers = []
    options: set[bytes] = set()
    host = b""
    request_id = b""
    forwarded: list[bytes] = []
    via: list[bytes] = []
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                options |= connection_tokens(value)
        elif lname in _REBUILT:
            if lname == b"x-request-id":
                request_id = value.strip()
            elif lname == b"x-forwarded-for":
                forwarded.append(value.strip())
            else:
                via.append(value.strip())
        elif lname not in _SET_BY_ROUTER:
            if lname == b"host":
                if host:
                    raise MalformedRequest("more than one Host header")
                host = value
            kept.append((name, value))
    if options:
        kept = _drop_connection_options(kept, options)

    body = request_body_kind(headers)
    rid = request_id.decode("ascii") if valid_request_id(request_id) else new_request_id()
    forwarded.append(client_ip.encode("ascii"))
    forwarded_for = b", ".join(forwarded)
    via.append(VIA)
    kept += [
        (b"X-Request-Id", rid.encode("ascii")),
        (b"X-Forwarded-For", forwarded_for),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Port", b"%d" % router_port),
        (b"X-Request-Start", b"%d" % request_start_ms),
        (b"Via", b", ".join(via)),
    ]
    if body is BodyKind.CHUNKED:
        kept.append((b"Transfer-Encoding", b"chunked"))
    return ForwardedRequest(
        head=serialize_head(b"%s %s HTTP/1.1" % (method, target), kept),
        host=host.decode("latin-1"),
        request_id=rid,
        forwarded_for=forwarded_for.decode("latin-1"),
        body=body,
    )


def forward_response_head(
    status: int,
    reason: bytes,
    headers: Headers,
    *,
    chunked: bool,
    keep_alive: bool,
    http10_client: bool,
) -> bytes:
    """The response head to send to the client for a dyno's response (or 1xx interim one).

    ``chunked``: the router frames the body as chunks. ``keep_alive``: the client connection
    stays open after this response (said explicitly to an HTTP/1.0 client, which closes by
    default; ``Connection: close`` otherwise when it does not).
    """
    kept: Headers = []
    options: set[bytes] = set()
    via: list[bytes] = []
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                options |= connection_tokens(value)
        elif lname == b"via":
            via.append(value.strip())
        else:
            kept.append((name, value))
    if options:
        kept = _drop_connection_options(kept, options)
    via.append(VIA)
    kept.append((b"Via", b", ".join(via)))
    if chunked:
        kept.append((b"Transfer-Encoding", b"chunked"))
    if status >= 200:
        if not keep_alive:
            kept.append((b"Connection", b"close"))
        elif http10_client:
            kept.append((b"Connection", b"keep-alive"))
    return serialize_head(b"HTTP/1.1 %d %s" % (status, reason), kept)
