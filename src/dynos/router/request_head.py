"""The rules for a request head, without I/O: its limits, what makes it refused, its id.

Refused input: a malformed request -> 400, a request line over 8 KB -> 414, a header line over
8 KB, a head over 64 KB or more than 1,000 headers -> 431; anything that could be framed two
ways (Content-Length with Transfer-Encoding, several lengths, a coding other than ``chunked``,
bad chunks, obs-fold, bare LF: httptools' llhttp refuses them, forwarding.py checks the
framing again) -> 400 and the connection closed; so does an HTTP/0.9 request line, as soon as
it ends. The client connection (client.py) applies these as httptools reads the head.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from dynos.router.forwarding import ForwardedRequest, MalformedRequest, forward_request
from dynos.router.http import BodyKind, Headers

# Request heads: Heroku's router answers 414 past 8192 bytes of request line and 431 past 8192
# in one header line. httptools gathers a header before handing it over, so reads that end
# inside a head are counted too: one header trickled in without end is cut off at
# HEAD_READ_LIMIT (bytes of reads, so some slack for pipelining).
MAX_REQUEST_LINE = 8192
MAX_HEADER_LINE = 8192
MAX_HEADERS = 1000
MAX_HEAD = 64 * 1024
HEAD_READ_LIMIT = MAX_HEAD + 1024 * 1024


class RequestIds:
    """Request ids: version 4 UUIDs, unique without a syscall or a 128-bit number each.

    60 bits are drawn once (per router process) and the other 62 count up from a random
    start, so ids never repeat within a process and collide across processes with odds of
    one in 2**60; ``uuid.uuid4`` reads ``os.urandom`` for every id. An id names a request in
    the logs; it is not a secret, and the next one is guessable.
    """

    def __init__(self) -> None:
        bits = random.SystemRandom()
        h = f"{bits.getrandbits(60):015x}"
        self.prefix = f"{h[:8]}-{h[8:12]}-4{h[12:]}-"
        self.sequence = bits.getrandbits(61)

    def new(self) -> str:
        n = self.sequence = (self.sequence + 1) & 0x3FFF_FFFF_FFFF_FFFF  # 62 bits
        return f"{self.prefix}{0x8000 | n >> 48:04x}-{n & 0xFFFF_FFFF_FFFF:012x}"


new_request_id = RequestIds().new


def websocket_upgrade(headers: Headers) -> bytes:
    """The Upgrade header's value when it asks for WebSocket, else b""."""
    for name, value in headers:
        if name.lower() == b"upgrade":
            return value if value.strip().lower() == b"websocket" else b""
    return b""


def request_line_status(line: bytes) -> int | None:
    """What the start of a head says, while it is being read: 400 for an HTTP/0.9 request
    line (``GET /``, no version) as soon as it ends, 0 once the line is known to be fine (or
    too long: the parser answers 414), None while it has not ended.

    llhttp reads an HTTP/0.9 line as the start of a head whose headers are still to come,
    and would hold the connection until the header timeout.
    """
    end = line.find(b"\n")
    if end >= 0:
        return 0 if b" HTTP/" in line[:end] else 400
    return 0 if len(line) > MAX_REQUEST_LINE + 16 else None


def forward_head(
    method: bytes,
    version: str,
    url: bytes,
    headers: Headers,
    *,
    upgrading: bool,
    client_ip: str,
    router_port: int,
    request_start_ms: int,
    new_request_id: Callable[[], str] = new_request_id,
    https: bool = False,
) -> tuple[ForwardedRequest, bytes]:
    """The head as it goes to a dyno, and the protocol a WebSocket upgrade asks for (b""
    when none); raises ``MalformedRequest`` for a head the router refuses.

    ``upgrading``: the parser saw an upgrade (``Connection: upgrade`` or CONNECT).
    """
    if version != "1.1" and version != "1.0":
        raise MalformedRequest("not HTTP/1.0 or HTTP/1.1")
    if not url.startswith(b"/") and not (url == b"*" and method == b"OPTIONS"):
        raise MalformedRequest("a request target that is not a path")
    upgrade = b""
    if upgrading:
        if method == b"CONNECT":
            raise MalformedRequest("CONNECT")
        upgrade = websocket_upgrade(headers) if method == b"GET" else b""
    fwd = forward_request(
        method,
        url,
        headers,
        client_ip=client_ip,
        router_port=router_port,
        request_start_ms=request_start_ms,
        new_request_id=new_request_id,
        upgrade=upgrade,
        https=https,
    )
    if not fwd.host and version == "1.1":
        raise MalformedRequest("HTTP/1.1 request without a Host header")
    if upgrading and fwd.body is not BodyKind.NONE:
        # httptools stops at the head of an upgrade: a body after it cannot be framed.
        raise MalformedRequest("an upgrade with a body")
    return fwd, upgrade
