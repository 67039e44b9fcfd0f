"""The dyno side of the proxy: one HTTP/1.1 connection to a dyno, and a keep-alive pool.

An ``UpstreamConnection`` carries one request at a time. While it does, it reports the
response to its ``listener`` (the client connection) as it is parsed: head, body pieces,
completion or failure. Between requests it waits in the ``UpstreamPool``; a dyno that closes
an idle connection takes it out of the pool.

Why some things are done the way they are:
- httptools cannot be told that a response answers a HEAD request (it would wait for the body
  that ``Content-Length`` announces), so a HEAD response completes at its head and the parser
  is replaced by a fresh one.
- Completion is reported after ``feed_data`` returns, not from inside the parser callback, so
  that the listener may hand the connection to the next request straight away. A read that
  does not complete the response ends with ``response_flush``: the listener collects what
  one read produced and writes it to the client in one call (one syscall, not one per piece).
- A 101 to a request that asked to upgrade switches the connection to a tunnel: the listener
  hands it a ``TunnelListener`` (``open_tunnel``, router/tunnel.py), what follows goes to
  that unparsed, and the connection is never pooled again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

import httptools
from mypy_extensions import mypyc_attr

from dynos.router.dyno_slot import DynoSlot, IdleConnection
from dynos.router.http import BodyKind, Headers, response_body_kind
from dynos.router.upstream_listener import ResponseListener, TunnelListener, UpstreamFailure

__all__ = ["ResponseListener", "TunnelListener", "UpstreamConnection", "UpstreamFailure"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # Heroku's H19 threshold
# Shorter than the keep-alive timeout of common app servers (uvicorn and node: 5s), so the
# pool rarely hands out a connection the dyno is closing.
IDLE_TIMEOUT = 4.0
MAX_IDLE_PER_BACKEND = 64


# Tests subclass the connection and the pool to plant failures (the module is compiled).
@mypyc_attr(allow_interpreted_subclasses=True)
class UpstreamConnection(asyncio.Protocol):
    def __init__(self, slot: DynoSlot, pool: UpstreamPool) -> None:
        self.slot = slot
        self.endpoint = slot.endpoint  # the address connected to (a slot's may change)
        self.listener: ResponseListener[UpstreamConnection] | None = None
        self.transport: asyncio.Transport | None = None
        self.requests = 0  # requests sent so far; > 1 means the connection was reused
        self.received = False  # whether any byte of the current response arrived
        self.closed = False
        self.tunnel: TunnelListener | None = None  # after a 101: bytes pass through unparsed
        self.idle_since = 0.0
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = False
        self._upgrade_request = False
        self._switching = False  # a 101 head was parsed
        self._reason = b""
        self._headers: Headers = []
        self._body = BodyKind.NONE
        self._head_seen = False  # the final (non-1xx) head of the current response
        self._interim = False
        self._complete = False
        self._keep_alive = False
        self._broken = False  # the dyno sent what we did not ask for; never reuse
        self._bad_response = False
        self._reading = True

    # ---- used by the client connection -------------------------------------------------

    def send(
        self,
        listener: ResponseListener[UpstreamConnection],
        data: list[bytes],
        *,
        head_request: bool,
        upgrade: bool = False,
    ) -> None:
        """Start a request: ``data`` is its head and whatever body is already at hand.

        ``upgrade``: the request asks to switch protocols, so a 101 answer is expected.
        """
        assert self.transport is not None
        self.listener = listener
        self.requests += 1
        self.received = False
        self._head_request = head_request
        self._upgrade_request = upgrade
        self._head_seen = self._complete = self._interim = False
        self._body = BodyKind.NONE
        self.transport.write(data[0] if len(data) == 1 else b"".join(data))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, data: tuple[bytes, ...] | list[bytes]) -> None:
        """Pieces of one write (chunk framing): joined, one buffer (see ``send``)."""
        assert self.transport is not None
        self.transport.write(b"".join(data))

    def pause_reading(self) -> None:
        if self._reading and self.transport is not None and not self.closed:
            self._reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading and self.transport is not None and not self.closed:
            self._reading = True
            self.transport.resume_reading()

    def open_tunnel(self, tunnel: TunnelListener) -> None:
        """The dyno switched protocols: from now on ``tunnel`` gets what it sends."""
        self.listener = None
        self.tunnel = tunnel

    def close(self) -> None:
        self.listener = None
        self.tunnel = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    # ---- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        if listener is None:
            tunnel = self.tunnel
            if tunnel is not None:
                tunnel.tunnel_data(data)
                return
            # Nothing asked: an idle dyno connection must stay silent.
            self._pool.discard(self)
            self.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self._switching and self.listener is listener:
                # The listener opens the tunnel (open_tunnel) before it writes anything.
                listener.response_upgraded(self, self._reason, self._headers, data[exc.args[0] :])
                return
            self._bad_response = True  # 101 to a request that did not ask to upgrade
        except httptools.HttpParserCallbackError as exc:
            # A bug in the router's own code, not the dyno's fault: H99 for this request.
            log.error("router: error while relaying a response", exc_info=exc.__context__)
            self.listener = None
            self.close()
            listener.platform_error()
            return
        except httptools.HttpParserError:
            self._bad_response = True
        if self.listener is not listener:
            return  # let go of while parsing
        if self._bad_response:
            self.listener = None
            listener.upstream_failed(self, UpstreamFailure.BAD_RESPONSE)
        elif self._complete:
            self.listener = None
            if self._head_request:
                self._parser = httptools.HttpResponseParser(self)
            listener.response_complete(self, self._keep_alive and not self._broken)
        else:
            listener.response_flush()

    def eof_received(self) -> bool | None:
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel = None
            tunnel.tunnel_closed()
            return False
        listener = self.listener
        if listener is not None:
            self.listener = None
            if self._head_seen and self._body is BodyKind.UNTIL_CLOSE:
                listener.response_complete(self, False)
            else:
                listener.upstream_failed(self, UpstreamFailure.CLOSED)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        listener = self.listener
        tunnel = self.tunnel
        self.listener = self.tunnel = None
        if tunnel is not None:
            tunnel.tunnel_closed()
        elif listener is not None:
            listener.upstream_failed(self, UpstreamFailure.CLOSED)
        else:
            self._pool.discard(self)

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_write_paused()
        elif self.tunnel is not None:
            self.tunnel.upstream_write_paused()

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_write_resumed()
        elif self.tunnel is not None:
            self.tunnel.upstream_write_resumed()

    # ---- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete or self._head_seen:
            self._broken = True  # a second response to one request
        self._reason = b""
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        listener = self.listener
        if listener is None or self._broken:
            return
        status = self._parser.get_status_code()
        if status == 101:
            if self._upgrade_request:
                self._switching = True  # the parser stops here; data_received takes over
            else:
                self._bad_response = True
        elif status < 200:
            self._interim = True
            listener.response_interim(status, self._reason, self._headers)
        else:
            self._head_seen = True
            self._body = response_body_kind(status, self._head_request, self._headers)
            listener.response_head(status, self._reason, self._headers, self._body)
            if self._head_request:
                self._keep_alive = self._parser.should_keep_alive()
                self._complete = True

    def on_body(self, body: bytes) -> None:
        listener = self.listener
        if self._complete or self._broken or listener is None:
            self._broken = True
            return
        listener.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif not self._complete:
            self._keep_alive = self._parser.should_keep_alive()
            self._complete = True


@mypyc_attr(allow_interpreted_subclasses=True)
class UpstreamPool:
    """Opens connections to dynos and keeps the idle keep-alive ones, per dyno, newest first.

    The idle connections live on their ``DynoSlot`` so that the routing table can close them
    the moment a dyno leaves its route. Old idle connections are closed by one sweep timer,
    not a timer per connection.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_idle_per_backend: int = MAX_IDLE_PER_BACKEND,
        connect_timeout: float = CONNECT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.clock = clock  # the router's: idle_since is a reading of it
        self.max_idle_per_backend = max_idle_per_backend
        self.connect_timeout = connect_timeout
        self._with_idle: set[DynoSlot] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def open(self, slot: DynoSlot) -> UpstreamConnection:
        """A new connection to ``slot``'s dyno.

        Raises ``TimeoutError`` after ``connect_timeout`` and ``OSError`` when refused.
        """
        loop = asyncio.get_running_loop()
        endpoint = slot.endpoint
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(slot, self), endpoint.host, endpoint.port
            )
        return conn

    def take(self, slot: DynoSlot, now: float) -> UpstreamConnection | None:
        """An idle connection to ``slot``'s dyno that is still fresh, or None.

        ``now``: ``time.monotonic()``, or the router's coarse reading of it.
        """
        idle = slot.idle
        deadline = now - self.idle_timeout
        while idle:
            conn = cast(UpstreamConnection, idle.pop())
            if not conn.closed and conn.idle_since > deadline:
                return conn
            conn.close()
        return None

    def put(self, conn: UpstreamConnection, now: float) -> None:
        """Keep ``conn`` for the next request to its dyno, or close it.

        Closed instead when the dyno left its route (draining), moved, has enough idle
        connections, or the router is shutting down. ``now`` as for ``take``.
        """
        if conn.closed:
            return
        slot = conn.slot
        idle = slot.idle
        if (
            self._closed
            or not slot.routable
            or conn.endpoint is not slot.endpoint
            or len(idle) >= self.max_idle_per_backend
        ):
            conn.close()
            return
        if not conn._reading:
            conn.resume_reading()  # an idle connection must notice the dyno closing it
        conn.idle_since = now
        idle.append(conn)
        self._with_idle.add(slot)
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self.idle_timeout, self._close_expired)

    def discard(self, conn: UpstreamConnection) -> None:
        idle = conn.slot.idle
        if conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        """Close every idle connection and keep no more (the router is shutting down)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for slot in self._with_idle:
            slot.close_idle()
        self._with_idle.clear()

    def _close_expired(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = self.clock() - self.idle_timeout
        for slot in list(self._with_idle):
            fresh: list[IdleConnection] = []
            for conn in cast(list[UpstreamConnection], slot.idle):
                if not conn.closed and conn.idle_since > deadline:
                    fresh.append(conn)
                else:
                    conn.close()
            slot.idle = fresh
            if not fresh:
                self._with_idle.discard(slot)
        self._sweep = (
            loop.call_later(self.idle_timeout, self._close_expired) if self._with_idle else None
        )
