"""The router: the HTTP/1.1 front door that sends each request to one of its app's web dynos.

``Host: foo.localhost`` picks the app from the routing table, the balancer picks the dyno
(least outstanding of two random choices), and the request and response stream through with
Heroku's headers added (``dynos.router.forwarding``). Each request leaves one line in the
app's log, Heroku's ``at=info method=GET path="/" ... status=200 bytes=1234``
(``dynos.router.request_log``, batched per loop iteration); failures are answered with an
error page and an H-code line (``dynos.router.errors``). Per-app counters, a latency histogram
and in-flight gauges are in ``metrics_registry`` (``dynos.router.metrics``).

The work per connection is in ``dynos.router.client`` and ``pipeline`` (client side),
``dynos.router.exchange`` and ``answer`` (one request), ``tunnel`` (after a 101) and
``dynos.router.upstream`` (dyno side, with the keep-alive pool); they see this class through
``context.RouterContext``. This module binds the socket, runs the one timer that checks every
connection's deadlines (``tick``), and shuts the whole thing down in order.

One Router per process, one event loop. The server runs one in its own process and, with
``--router-processes N``, N - 1 more in processes of their own on the same port
(``dynos.router.processes`` and ``worker``: routes, drains, wake-ups, logs and metrics travel
through the server); docs/performance.md says why one process is the default.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import socket
import time
from collections.abc import Callable

from prometheus_client.registry import CollectorRegistry

from dynos.logs.hub import LogHub
from dynos.router.client import ClientConnection
from dynos.router.context import Connection
from dynos.router.limits import ConnectionCounts, ConnectionLimits, Refusal, limits_for
from dynos.router.metrics import RouterMetrics, metrics_registry
from dynos.router.request_log import RequestLog
from dynos.router.routing_table import RoutingTable
from dynos.router.tls import RouterTls
from dynos.router.upstream import UpstreamPool

KEEPALIVE_TIMEOUT = 75.0  # idle client connection (nginx's default)
HEADER_TIMEOUT = 20.0  # a client must send a whole request head within this
DRAIN_TIMEOUT = 10.0  # how long close() lets requests in flight finish
WAKE_TIMEOUT = 75.0  # how long a request waits for an idle app to wake (then H20)
TICK = 0.5  # how often deadlines are checked: the precision of every timeout above
BACKLOG = 1024

log = logging.getLogger(__name__)


class Router:
    """The routing layer. ``start`` it once, ``close`` it once.

    ``table`` is read once per request (the router writes only its per-dyno state: in-flight
    counts, quarantine, idle connections); ``logs`` gets one line per request that reached a
    known app (``source="dynos"``, ``dyno="router"``). ``limits``: the most client
    connections held, per address and in all (default: from the process's descriptor limit).
    ``clock``: what every timeout and duration reads (``time.monotonic``; a test's
    ``FakeClock`` moves by hand, and ``check_deadlines`` applies the move at once).
    """

    def __init__(
        self,
        table: RoutingTable,
        logs: LogHub,
        *,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
        drain_timeout: float = DRAIN_TIMEOUT,
        wake_timeout: float = WAKE_TIMEOUT,
        tick: float = TICK,
        pool: UpstreamPool | None = None,
        random: Callable[[], float] = random.random,
        limits: ConnectionLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.logs = logs
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.drain_timeout = drain_timeout
        self.wake_timeout = wake_timeout
        self.tick = tick
        self.pool = pool if pool is not None else UpstreamPool(clock=clock)
        self.random = random
        self.request_log = RequestLog(logs)
        self.metrics = RouterMetrics()
        self.metrics_registry: CollectorRegistry = metrics_registry(self.metrics)
        self.port = 0
        self.https_port = 0  # the TLS port, once start_https bound it
        self.tls = RouterTls()  # its certificates: told by the server (update)
        self.clock = clock
        self.now = clock()  # updated every tick: for timeouts, not for durations
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._https_server: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._connections: set[Connection] = set()
        if limits is None:
            limits = limits_for(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.counts = ConnectionCounts(limits)
        self._drained: asyncio.Future[None] | None = None
        self._closing = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def start(
        self, host: str = "", port: int = 0, *, sock: socket.socket | None = None
    ) -> int:
        """Accept on the listening socket ``sock`` (the server's, from
        processes.listening_sockets), or else on ``host:port`` (port 0: any free port, the
        tests' way); return the port.
        """
        if self._server is not None:
            raise RuntimeError("the router is already started")
        loop = self.loop
        if sock is not None:
            # asyncio listens again on a socket it is given, by default with a backlog of 100.
            self._server = await loop.create_server(
                lambda: ClientConnection(self), sock=sock, backlog=BACKLOG
            )
        else:
            self._server = await loop.create_server(
                lambda: ClientConnection(self), host, port, backlog=BACKLOG
            )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._on_tick()
        return self.port

    async def start_https(
        self, host: str = "", port: int = 0, *, sock: socket.socket | None = None
    ) -> int:
        """Accept TLS connections on ``sock`` (or ``host:port``), with ``tls``'s certificates;
        return the port. Its requests take the same path as the HTTP port's, with
        ``X-Forwarded-Proto: https`` and this port in ``X-Forwarded-Port``. ``start`` first.
        """
        if self._server is None or self._https_server is not None:
            raise RuntimeError("start the router first, and its TLS port once")
        context = self.tls.context

        def connection() -> ClientConnection:
            return ClientConnection(self, https=True)

        if sock is not None:
            self._https_server = await self.loop.create_server(
                connection, sock=sock, backlog=BACKLOG, ssl=context, ssl_handshake_timeout=10
            )
        else:
            self._https_server = await self.loop.create_server(
                connection, host, port, backlog=BACKLOG, ssl=context, ssl_handshake_timeout=10
            )
        self.https_port = int(self._https_server.sockets[0].getsockname()[1])
        return self.https_port

    async def close(self) -> None:
        """Stop accepting, close idle connections, give requests in flight ``drain_timeout``.

        Connections still busy after that are cut. Idle dyno connections are closed last,
        and the last log lines written.
        """
        server = self._server
        if server is None or self._closing:
            return
        self._closing = True
        server.close()
        if self._https_server is not None:
            self._https_server.close()
        for conn in list(self._connections):
            conn.drain()
        if self._connections:
            self._drained = self.loop.create_future()
            try:
                async with asyncio.timeout(self.drain_timeout):
                    await self._drained
            except TimeoutError:
                for conn in list(self._connections):
                    conn.abort()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.pool.close()
        await server.wait_closed()
        if self._https_server is not None:
            await self._https_server.wait_closed()
        self.request_log.flush()

    def flush_logs(self) -> None:
        """Write the router lines collected so far (they go out after each loop iteration)."""
        self.request_log.flush()

    # ---- called by ClientConnection -----------------------------------------------------

    def connection_opened(self, conn: Connection) -> bool:
        """Take ``conn`` in, or refuse it (False): it would pass a cap of ``limits``."""
        refusal = self.counts.admit(conn.client_ip)
        if refusal is not None:
            limits = self.counts.limits
            # One line per kind of refusal, whatever the address: the server's log filter
            # shows the first and counts the rest (dynos.server_log).
            if refusal is Refusal.PER_CLIENT:
                log.warning(
                    'router: at=error desc="Too many connections from one address" fwd="%s" '
                    "limit=%d: refused with 503 (--router-max-connections-per-client)",
                    conn.client_ip,
                    limits.per_client,
                )
            else:
                log.warning(
                    'router: at=error desc="Too many connections" fwd="%s" limit=%d: '
                    "refused with 503 (--router-max-connections)",
                    conn.client_ip,
                    limits.total,
                )
            return False
        self._connections.add(conn)
        if self._closing:
            conn.drain()  # accepted just before the listening socket closed
        return True

    def connection_closed(self, conn: Connection) -> None:
        if conn not in self._connections:
            return  # refused: never counted
        self._connections.discard(conn)
        self.counts.release(conn.client_ip)
        drained = self._drained
        if not self._connections and drained is not None and not drained.done():
            drained.set_result(None)

    # ---- the tick -----------------------------------------------------------------------

    def check_deadlines(self) -> None:
        """Read the clock and time out what is late (every ``tick``; a test with a fake clock
        calls it after moving the clock)."""
        now = self.now = self.clock()
        for conn in list(self._connections):
            conn.check_deadlines(now)

    def _on_tick(self) -> None:
        self.check_deadlines()
        self._ticker = self.loop.call_later(self.tick, self._on_tick)
