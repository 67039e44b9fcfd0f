"""HTTP/1.1 framing for the proxy: body kinds, chunk encoding, head serialization.

Pure functions over bytes. httptools hands the proxy *decoded* bodies (chunked framing
removed), so a chunked body is re-framed on the way out rather than passed through; that also
lets the router turn a dyno's read-until-close body into a chunked one and keep the client's
connection alive.
"""

from __future__ import annotations

import enum
from http import HTTPStatus

Headers = list[tuple[bytes, bytes]]

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"

# RFC 9110 §7.6.1: headers that describe one connection, never forwarded. Headers named in a
# ``Connection`` header are hop-by-hop too (see ``connection_tokens``).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})


class BodyKind(enum.Enum):
    """How the end of a message body is found."""

    NONE = "none"  # no body at all (HEAD response, 204, 304, bodiless request)
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    UNTIL_CLOSE = "until-close"  # responses only: the body ends when the dyno closes


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased options of a ``Connection`` header value (``close``, header names)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def request_body_kind(headers: Headers) -> BodyKind:
    """The framing of a request body, from headers httptools has already validated.

    httptools rejects a request whose transfer coding does not end in ``chunked`` and one with
    both ``Content-Length`` and ``Transfer-Encoding``, so the presence of a header is enough.
    """
    kind = BodyKind.NONE
    for name, _ in headers:
        lname = name.lower()
        if lname == b"transfer-encoding":
            return BodyKind.CHUNKED
        if lname == b"content-length":
            kind = BodyKind.LENGTH
    return kind


def response_body_kind(status: int, head_request: bool, headers: Headers) -> BodyKind:
    """The framing of a dyno's response body (RFC 9112 §6.3, in its order)."""
    if head_request or status < 200 or status in (204, 304):
        return BodyKind.NONE
    kind = BodyKind.UNTIL_CLOSE
    for name, value in headers:
        size = len(name)
        if size != 17 and size != 14:  # neither transfer-encoding nor content-length
            continue
        lname = name.lower()
        if lname == b"transfer-encoding":
            # Only a final "chunked" delimits the body; any other coding runs until close.
            last = value.rsplit(b",", 1)[-1].strip().lower()
            return BodyKind.CHUNKED if last == b"chunked" else BodyKind.UNTIL_CLOSE
        if lname == b"content-length":
            kind = BodyKind.LENGTH
    return kind


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """``data`` framed as one chunk, as pieces for ``transport.writelines`` (no copy of data).

    ``data`` must not be empty: an empty chunk is the last chunk.
    """
    return b"%x\r\n" % len(data), data, CRLF


def chunked_size(data_len: int) -> int:
    """How many bytes ``chunk`` puts on the wire for ``data_len`` bytes of body."""
    return len(b"%x" % data_len) + data_len + 4


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def serialize_head(start_line: bytes, headers: Headers) -> bytes:
    """A message head: the start line, the header lines and the blank line."""
    parts = [start_line, CRLF]
    for name, value in headers:
        parts += (name, b": ", value, CRLF)
    parts.append(CRLF)
    return b"".join(parts)


def simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes,
    close: bool,
    http10_keep_alive: bool = False,
    head_only: bool = False,
) -> bytes:
    """A whole response the router makes itself (error pages): head, and body unless HEAD."""
    headers: Headers = [
        (b"Content-Type", content_type),
        (b"Content-Length", b"%d" % len(body)),
        (b"Cache-Control", b"no-cache, no-store"),
    ]
    if close:
        headers.append((b"Connection", b"close"))
    elif http10_keep_alive:
        headers.append((b"Connection", b"keep-alive"))
    start = b"HTTP/1.1 %d %s" % (status, reason_phrase(status))
    head = serialize_head(start, headers)
    return head if head_only else head + body
