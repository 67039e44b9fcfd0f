"""What a dyno connection (upstream.py) reports to the request it carries, and after a 101 to
the tunnel it carries: the two listener protocols and how a connection fails.

``ResponseListener`` is generic in the connection it is told about (upstream.py uses
``ResponseListener[UpstreamConnection]``), so that this module need not import upstream.py,
which imports it.
"""

from __future__ import annotations

import enum
from typing import Protocol, TypeVar

from dynos.router.http import BodyKind, Headers

Conn = TypeVar("Conn", contravariant=True)


class UpstreamFailure(enum.Enum):
    CLOSED = "closed"  # the dyno closed the connection before the response was complete
    BAD_RESPONSE = "bad-response"  # the dyno sent something that is not an HTTP/1.1 response


class ResponseListener(Protocol[Conn]):
    """What an upstream connection tells the request it carries (an ``Exchange``)."""

    def response_interim(self, status: int, reason: bytes, headers: Headers) -> None: ...

    def response_head(
        self, status: int, reason: bytes, headers: Headers, body: BodyKind
    ) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_flush(self) -> None: ...

    def response_complete(self, conn: Conn, reusable: bool) -> None: ...

    def response_upgraded(
        self, conn: Conn, reason: bytes, headers: Headers, rest: bytes
    ) -> None: ...

    def upstream_failed(self, conn: Conn, failure: UpstreamFailure) -> None: ...

    def upstream_write_paused(self) -> None: ...

    def upstream_write_resumed(self) -> None: ...

    def platform_error(self) -> None: ...


class TunnelListener(Protocol):
    """What an upstream connection tells the tunnel it carries, after a 101."""

    def tunnel_data(self, data: bytes) -> None: ...

    def tunnel_closed(self) -> None: ...

    def upstream_write_paused(self) -> None: ...

    def upstream_write_resumed(self) -> None: ...
