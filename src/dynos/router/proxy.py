"""The router: the HTTP/1.1 front door that sends each request to one of its app's web dynos.

``Host: foo.localhost`` picks the app from the routing table, round robin picks the dyno,
and the request and response stream through with Heroku's headers added
(``dynos.router.forwarding``). Each request leaves one line in the app's log, Heroku's
``at=info method=GET path="/" ... status=200 bytes=1234`` (``dynos.router.request_log``);
failures are answered with an error page and an H-code line (``dynos.router.errors``).

The work per connection is in ``dynos.router.client`` (client side) and
``dynos.router.upstream`` (dyno side, with the keep-alive pool). This module binds the socket
and shuts the whole thing down in order.
"""

from __future__ import annotations

import asyncio

from dynos.logs.hub import LogHub
from dynos.router.client import ClientConnection
from dynos.router.routing_table import RoutingTable
from dynos.router.upstream import UpstreamPool

KEEPALIVE_TIMEOUT = 75.0  # idle client connection (nginx's default)
DRAIN_TIMEOUT = 10.0  # how long close() lets requests in flight finish
BACKLOG = 1024


class Router:
    """The routing layer. ``start`` it once, ``close`` it once.

    ``table`` is read once per request and never written; ``logs`` gets one line per request
    that reached a known app (``source="dynos"``, ``dyno="router"``).
    """

    def __init__(
        self,
        table: RoutingTable,
        logs: LogHub,
        *,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        drain_timeout: float = DRAIN_TIMEOUT,
        pool: UpstreamPool | None = None,
    ) -> None:
        self.table = table
        self.logs = logs
        self.keepalive_timeout = keepalive_timeout
        self.drain_timeout = drain_timeout
        self.pool = pool if pool is not None else UpstreamPool()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()
        self._drained: asyncio.Future[None] | None = None
        self._closing = False

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0: any free port); return the port listened on.

        Bind one address: with a name that resolves to several (``localhost``) and port 0,
        each socket would get its own port and only the first is returned.
        """
        if self._server is not None:
            raise RuntimeError("the router is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=BACKLOG
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop accepting, close idle connections, give requests in flight ``drain_timeout``.

        Connections still busy after that are cut. Idle dyno connections are closed last.
        """
        server = self._server
        if server is None or self._closing:
            return
        self._closing = True
        server.close()
        for conn in list(self._connections):
            conn.drain()
        if self._connections:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.drain_timeout):
                    await self._drained
            except TimeoutError:
                for conn in list(self._connections):
                    conn.abort()
        self.pool.close()
        await server.wait_closed()

    # ---- called by ClientConnection -----------------------------------------------------

    def connection_opened(self, conn: ClientConnection) -> None:
        self._connections.add(conn)
        if self._closing:
            conn.drain()  # accepted just before the listening socket closed

    def connection_closed(self, conn: ClientConnection) -> None:
        self._connections.discard(conn)
        drained = self._drained
        if not self._connections and drained is not None and not drained.done():
            drained.set_result(None)
