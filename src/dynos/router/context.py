"""What the router's connections and exchanges use of the router (``proxy.Router``), and what
the router uses of a client connection: two protocols, so that client.py and exchange.py
need not import proxy.py, which imports them (no import circle, even for type checking).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from dynos.router.metrics import RouterMetrics
from dynos.router.request_log import RequestLog
from dynos.router.routing_table import RoutingTable
from dynos.router.upstream import UpstreamPool


class Connection(Protocol):
    """A client connection, as the router sees it (``client.ClientConnection``)."""

    client_ip: str

    def drain(self) -> None: ...

    def abort(self) -> None: ...

    def check_deadlines(self, now: float) -> None: ...


class RouterContext(Protocol):
    """The router, as its connections and exchanges see it (``proxy.Router``).

    ``clock`` is the router's ``time.monotonic`` (a test may hand it a ``FakeClock``): every
    timeout and duration of the router reads it. ``now`` is its reading at the last tick:
    coarse, for deadlines and quarantine, not for durations.
    """

    table: RoutingTable
    pool: UpstreamPool
    metrics: RouterMetrics
    request_log: RequestLog
    random: Callable[[], float]
    clock: Callable[[], float]
    now: float
    port: int
    https_port: int  # 0: no TLS port
    header_timeout: float
    keepalive_timeout: float
    wake_timeout: float

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def connection_opened(self, conn: Connection) -> bool: ...

    def connection_closed(self, conn: Connection) -> None: ...
