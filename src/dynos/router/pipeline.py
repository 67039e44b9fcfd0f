"""A client connection's exchanges in order: the base of ``client.ClientConnection``.

Requests are answered in order: the ``active`` exchange is being proxied, pipelined ones wait
in ``queue`` (their bodies held, reading paused). An exchange ends when its request has been
read *and* its response written; then the next one starts, or the connection waits idle for
the router's ``keepalive_timeout``. ``Pipeline`` owns that order, the connection's life
(deadlines, draining, lingering), writing and flow control; client.py reads the requests.

Flow control is the transports' own: while the dyno's socket cannot take more request body,
reading from the client pauses; while the client's socket cannot take more response, reading
from the dyno pauses. Nothing buffers a whole body; at most ``BUFFER_LIMIT`` bytes of request
body wait while the dyno connection opens.

Responses are written through ``out`` and ``flush``: what one read from the dyno produced
(head, body pieces, chunk framing) leaves joined in one ``write``, one syscall (uvloop sends
a single buffer straight away; ``writelines`` of several takes a slower path, measured).

Timeouts are not timers per request: the router's tick calls ``check_deadlines`` on every
connection (a head not finished in ``header_timeout`` -> dropped; idle past
``keepalive_timeout`` -> closed; the active request past its app's timeout -> H12).

When a response ends before its request body was read (an error page, a dyno answering
early), the connection closes: the response says ``Connection: close``, and the router keeps
reading and dropping for ``LINGER_TIMEOUT`` after its FIN, so that the client reads the
response instead of a reset.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from dynos.router.answer import HTML, Answer
from dynos.router.context import RouterContext
from dynos.router.errors import bad_request_page, too_many_connections_page
from dynos.router.exchange import Exchange
from dynos.router.http import simple_response
from dynos.router.tunnel import Tunnel

BUFFER_LIMIT = 256 * 1024  # request body held while a dyno connection opens
LINGER_TIMEOUT = 2.0
TOO_MANY_CONNECTIONS = simple_response(
    503, too_many_connections_page(), content_type=HTML, close=True
)


class Pipeline(asyncio.Protocol):
    """One client connection's exchanges, answered in order (see the module's docstring)."""

    transport: asyncio.Transport

    def __init__(self, router: RouterContext) -> None:
        self.router = router
        self.draining = False  # close once the requests read so far are answered
        self.client_congested = False  # the client's socket is full: dynos' reading paused
        self.closed = False
        self.out: list[bytes] = []  # response bytes waiting for flush()
        self._loop = router.loop
        self.client_ip = ""  # the peer's address, "" when it has none (a Unix socket)
        self._parsing: Exchange | None = None
        self._active: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._message_open = False  # a request has begun and not yet been read to its end
        self._reading = True
        self.upstream_congested = False  # the dyno's socket is full: client's reading paused
        self._malformed = 0  # the status to refuse the connection's input with, once set
        self._lingering = False
        self._advancing = False
        self._cut_by_router = False
        self._upgrading: Exchange | None = None  # a forwarded upgrade waiting for its answer
        self._held: bytes | None = None  # what came after that upgrade's head
        self._tunnel: Tunnel | None = None
        self._head_since = 0.0  # reading a head since (or waiting for the first one)
        self._idle_since = 0.0  # idle between requests since
        self._timer: asyncio.TimerHandle | None = None  # the linger timer only

    # ---- lifecycle ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        self._head_since = self.router.now
        if not self.router.connection_opened(self):
            # Past a connection cap (router/limits.py): say so, read nothing, close.
            self._lingering = True
            self.transport.write(TOO_MANY_CONNECTIONS)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._active is not None:
            if self._cut_by_router:
                self._active.abandon()
            else:
                self._active.interrupted()
        for ex in (self._parsing, *self._queue):
            if ex is not None:
                ex.abandon()
        self._active = self._parsing = self._upgrading = self._tunnel = None
        self._queue.clear()
        self.router.connection_closed(self)

    def eof_received(self) -> bool:
        # A client that stops sending mid-exchange has left: browsers do not half-close. As
        # nginx and Heroku's router (H27) do, the router lets go of the dyno and closes.
        return False

    def drain(self) -> None:
        """The router is shutting down: answer what was asked, take nothing new, close."""
        self.draining = True
        if self._active is None and not self._message_open and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection (the router's drain timeout ran out)."""
        if not self.closed:
            self._cut_by_router = True
            self.transport.abort()

    def check_deadlines(self, now: float) -> None:
        """The router's tick: time out a slow head, an idle connection, a slow dyno (H12)."""
        if self.closed:
            return
        active = self._active
        if active is not None:
            if active.deadline:
                active.check_deadline(now)
        elif self._head_since:
            if now - self._head_since > self.router.header_timeout:
                self.transport.close()  # a client too slow to send its head is dropped
        elif self._idle_since and now - self._idle_since > self.router.keepalive_timeout:
            self.transport.close()

    def pause_writing(self) -> None:
        self.client_congested = True
        if self._tunnel is not None:
            self._tunnel.client_congested(True)
        elif self._active is not None and self._active.upstream is not None:
            self._active.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.client_congested = False
        if self._tunnel is not None:
            self._tunnel.client_congested(False)
        elif self._active is not None and self._active.upstream is not None:
            self._active.upstream.resume_reading()

    # ---- writing ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the exchanges put in ``out``, in one call."""
        out = self.out
        if out:
            if not self.closed:
                # One buffer: uvloop writes it at once; several go through a slower path.
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    # ---- what exchanges tell their connection -------------------------------------------

    def response_sent(self, ex: Answer) -> None:
        """``ex`` has written its whole response."""
        if ex is self._upgrading and ex.tunnel is None:
            self._upgrade_refused()
        if ex is not self._active or self._lingering:
            return
        if ex.request_complete:
            self._active = None
            if not ex.keep_alive:
                self.transport.close()
            else:
                self._advance()
        elif not ex.keep_alive:
            self._linger()
        # else: a bodiless request whose end is being parsed; end_of_request comes next

    def start_tunnel(self, tunnel: Tunnel) -> None:
        """The dyno accepted the upgrade: pass bytes through ``tunnel`` from now on."""
        self._upgrading = None
        self._tunnel = tunnel
        held, self._held = self._held, None
        if held:
            tunnel.from_client(held)
        self.sync_reading()

    def set_upstream_congested(self, congested: bool) -> None:
        if congested != self.upstream_congested:
            self.upstream_congested = congested
            self.sync_reading()

    def sync_reading(self) -> None:
        """Pause or resume reading the client, for every reason there is to pause."""
        if self.closed:
            return
        active = self._active
        pause = not self._lingering and (
            self.upstream_congested
            or bool(self._queue)
            or self._held is not None
            or (active is not None and active.pending_size > BUFFER_LIMIT)
        )
        if pause == self._reading:
            self._reading = not pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # ---- in order, one at a time --------------------------------------------------------

    def _advance(self) -> None:
        """Start queued exchanges in order while none is active; idle when there are none."""
        if self._advancing:
            return  # called back from inside the loop below
        self._advancing = True
        try:
            while self._active is None and self._queue and self._open():
                ex = self._queue.popleft()
                self._active = ex
                ex.start()
        finally:
            self._advancing = False
        if self._active is None and self._open():
            if self._malformed:
                self._reject_malformed()
            elif not self._message_open:
                if self.draining:
                    self.transport.close()
                else:
                    self._idle_since = self.router.now
        self.sync_reading()

    def _upgrade_refused(self) -> None:
        """The dyno answered an upgrade without switching: what followed is HTTP again."""
        self._upgrading = None
        if self._held is not None:
            self._loop.call_soon(self._read_held)  # once this response is dealt with

    def _read_held(self) -> None:
        held, self._held = self._held, None
        if held is None or self.closed:
            return
        if held:
            self.data_received(held)
        self.sync_reading()

    def _open(self) -> bool:
        """Whether the connection still takes requests and writes answers."""
        return not (self.closed or self._lingering or self.transport.is_closing())

    def _reject_malformed(self) -> None:
        """Refuse bytes that are not an acceptable request, after the answers before."""
        status = self._malformed or 400
        broken = self._parsing
        self._parsing = None
        self._message_open = False
        if broken is not None:
            # The bad bytes are inside this request's body: it cannot be completed.
            started, done = broken.response_started, broken.response_done
            broken.abandon()
            if broken in self._queue:
                self._queue.remove(broken)
            elif broken is self._active:
                self._active = None
                if started:
                    self._lingering = True
                    if done:
                        self.transport.close()  # the answer is written; keep it
                    else:
                        self.transport.abort()
                    return
        if self._active is None and self._open():
            page = simple_response(status, bad_request_page(status), content_type=HTML, close=True)
            self.transport.write(page)
            self._linger()  # the client may still be sending: let it read the answer

    def _linger(self) -> None:
        self._lingering = True
        self._active = None
        self._head_since = self._idle_since = 0.0
        self.sync_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self._loop.call_later(LINGER_TIMEOUT, self.transport.close)
        else:
            self.transport.close()
