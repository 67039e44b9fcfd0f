"""A tunnel: a client connection and a dyno connection joined after the dyno switched
protocols (``101 Switching Protocols``, a WebSocket), passing bytes both ways unread.

The exchange that carried the upgrade opens it once the 101 is relayed, and stays active on
its client connection (counted in flight for its dyno) until the tunnel ends: the dyno
closing its side closes the client's once what is buffered is sent; the client leaving
closes the dyno's. Flow control is the transports': a full socket on one side pauses
reading on the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dynos.router.upstream import UpstreamConnection


class Tunnel:
    """Bytes both ways between ``client`` (a transport) and ``conn`` until either closes."""

    __slots__ = ("_client", "_congested", "_conn", "_ended")

    def __init__(
        self,
        client: asyncio.Transport,
        conn: UpstreamConnection,
        *,
        ended: Callable[[], None],
        congested: Callable[[bool], None],
    ) -> None:
        """``ended`` is called once when the dyno ends the tunnel; ``congested(True)`` when
        the dyno's socket is full (pause reading the client), ``congested(False)`` when not."""
        self._client = client
        self._conn: UpstreamConnection | None = conn
        self._ended = ended
        self._congested = congested
        conn.open_tunnel(self)

    # ---- the client side ----------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        """Bytes from the client, for the dyno."""
        if self._conn is not None:
            self._conn.write(data)

    def client_congested(self, congested: bool) -> None:
        """The client's socket is full (or no longer): stop (or resume) reading the dyno."""
        conn = self._conn
        if conn is not None:
            if congested:
                conn.pause_reading()
            else:
                conn.resume_reading()

    def close(self) -> None:
        """The client is gone: close the dyno's side."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # ---- TunnelListener: the dyno side --------------------------------------------------

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the dyno, for the client."""
        self._client.write(data)

    def tunnel_closed(self) -> None:
        """The dyno ended the tunnel: close the client's side once what is buffered is sent."""
        self._conn = None
        self._ended()
        self._client.close()

    def upstream_write_paused(self) -> None:
        self._congested(True)

    def upstream_write_resumed(self) -> None:
        self._congested(False)
