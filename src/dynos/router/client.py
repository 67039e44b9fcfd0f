"""The client side of the proxy: one keep-alive HTTP/1.1 connection from a browser or client.

Requests are parsed with httptools and answered in order: the ``active`` exchange is being
proxied, pipelined ones wait in ``queue`` (their bodies held, reading paused). An exchange ends
when its request has been read *and* its response written; then the next one starts, or the
connection waits idle for the router's ``keepalive_timeout``.

Flow control is the transports' own: while the dyno's socket cannot take more request body,
reading from the client pauses; while the client's socket cannot take more response, reading
from the dyno pauses. Nothing buffers a whole body; at most ``BUFFER_LIMIT`` bytes of request
body wait while the dyno connection opens.

When a response ends before its request body was read (an error page, a dyno answering
early), the connection closes: the response says ``Connection: close``, and the router keeps
reading and dropping for ``LINGER_TIMEOUT`` after its FIN, so that the client reads the
response instead of a reset.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from dynos.router.errors import bad_request_page
from dynos.router.exchange import HTML, Exchange
from dynos.router.forwarding import MalformedRequest, forward_request
from dynos.router.http import BodyKind, Headers, request_body_kind, simple_response

if TYPE_CHECKING:
    from dynos.router.proxy import Router

BUFFER_LIMIT = 256 * 1024  # request body held while a dyno connection opens
LINGER_TIMEOUT = 2.0
# Request heads: Heroku's router answers 400 past 8192 bytes in one header line; the request
# target gets the same bound, and the whole head 64 KiB. httptools gathers a header before
# handing it over, so reads that end inside a head are counted too: one header trickled in
# without end is cut off at HEAD_READ_LIMIT (bytes of reads, so some slack for pipelining).
MAX_TARGET = 8192
MAX_HEADER_LINE = 8192
MAX_HEAD = 64 * 1024
HEAD_READ_LIMIT = MAX_HEAD + 1024 * 1024


def _new_request_id() -> str:
    return str(uuid.uuid4())


class ClientConnection(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, router: Router) -> None:
        self.router = router
        self.draining = False  # close once the requests read so far are answered
        self.client_congested = False  # the client's socket is full: dynos' reading paused
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._client_ip = ""
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0  # bytes of the current head, as parsed
        self._head_reads = 0  # bytes of reads that ended inside the current head
        self._parsing: Exchange | None = None
        self._active: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._message_open = False  # a request has begun and not yet been read to its end
        self._reading = True
        self._upstream_congested = False  # the dyno's socket is full: client's reading paused
        self._malformed = False
        self._lingering = False
        self._advancing = False
        self._cut_by_router = False
        self._timer: asyncio.TimerHandle | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        self.router.connection_opened(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._active is not None:
            if self._cut_by_router:
                self._active.abandon()
            else:
                self._active.interrupted()
        for ex in (self._parsing, *self._queue):
            if ex is not None:
                ex.abandon()
        self._active = self._parsing = None
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

    def pause_writing(self) -> None:
        self.client_congested = True
        if self._active is not None and self._active.upstream is not None:
            self._active.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.client_congested = False
        if self._active is not None and self._active.upstream is not None:
            self._active.upstream.resume_reading()

    # ---- reading requests ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # An Upgrade request (h2c, websocket) goes to the dyno as a plain request with the
            # Upgrade header removed; what follows its head is the next request.
            rest = data[exc.args[0] :]
            if rest and not self._malformed:
                self.data_received(rest)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, MalformedRequest):
                raise  # a bug in a callback below, not a bad request
            self._malformed = True
        except httptools.HttpParserError:
            self._malformed = True
        if self._message_open and self._parsing is None:  # this read ended inside a head
            self._head_reads += len(data)
            if self._head_reads > HEAD_READ_LIMIT:
                self._malformed = True
        else:
            self._head_reads = 0
        if self._malformed:
            self._reject_malformed()

    def on_message_begin(self) -> None:
        self._cancel_timer()
        self._message_open = True
        self._url = b""
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET:
            raise MalformedRequest("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._head_size += size
        if size > MAX_HEADER_LINE or self._head_size > MAX_HEAD:
            raise MalformedRequest("header too large")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self._open():
            return
        parser = self._parser
        method = parser.get_method()
        http10 = parser.get_http_version() == "1.0"
        if parser.should_upgrade() and (
            method == b"CONNECT" or request_body_kind(self._headers) is not BodyKind.NONE
        ):
            # httptools stops at the head of an upgrade; a body after it cannot be framed.
            raise MalformedRequest("CONNECT, or an upgrade with a body")
        # (raising here stops the parser; data_received answers 400)
        fwd = forward_request(
            method,
            self._url,
            self._headers,
            client_ip=self._client_ip,
            router_port=self.router.port,
            request_start_ms=int(time.time() * 1000),
            new_request_id=_new_request_id,
        )
        if not fwd.host and not http10:
            raise MalformedRequest("HTTP/1.1 request without a Host header")
        ex = Exchange(
            self,
            method,
            self._url,
            http10=http10,
            keep_alive=parser.should_keep_alive(),
            fwd=fwd,
        )
        self._parsing = ex
        self._queue.append(ex)
        self._advance()

    def on_body(self, body: bytes) -> None:
        ex = self._parsing
        if ex is not None:
            ex.body(body)
            if ex.pending_size > BUFFER_LIMIT:
                self.sync_reading()

    def on_message_complete(self) -> None:
        self._message_open = False
        ex = self._parsing
        self._parsing = None
        if ex is not None:
            ex.end_of_request()

    # ---- what exchanges tell their connection -------------------------------------------

    def response_sent(self, ex: Exchange) -> None:
        """``ex`` has written its whole response."""
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

    def set_upstream_congested(self, congested: bool) -> None:
        if congested != self._upstream_congested:
            self._upstream_congested = congested
            self.sync_reading()

    def sync_reading(self) -> None:
        """Pause or resume reading the client, for every reason there is to pause."""
        if self.closed:
            return
        active = self._active
        pause = not self._lingering and (
            self._upstream_congested
            or bool(self._queue)
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
            elif self.draining and not self._message_open:
                self.transport.close()
            elif not self._message_open:
                self._arm_idle_timer()
        self.sync_reading()

    def _open(self) -> bool:
        """Whether the connection still takes requests and writes answers."""
        return not (self.closed or self._lingering or self.transport.is_closing())

    def _reject_malformed(self) -> None:
        """Answer bytes that are not an HTTP/1.1 request with 400, after the answers before."""
        self._malformed = True
        broken = self._parsing
        self._parsing = None
        self._message_open = False
        if broken is not None:
            # The bad bytes are inside this request's body: it cannot be completed.
            broken.abandon()
            if broken in self._queue:
                self._queue.remove(broken)
            elif broken is self._active:
                self._active = None
                if broken.response_started:
                    self._lingering = True
                    if broken.response_done:
                        self.transport.close()  # the answer is written; keep it
                    else:
                        self.transport.abort()
                    return
        if self._active is None and self._open():
            page = simple_response(400, bad_request_page(), content_type=HTML, close=True)
            self.transport.write(page)
            self._linger()  # the client may still be sending: let it read the 400

    def _linger(self) -> None:
        self._cancel_timer()
        self._lingering = True
        self._active = None
        self.sync_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self._loop.call_later(LINGER_TIMEOUT, self.transport.close)
        else:
            self.transport.close()

    # ---- the idle timer -----------------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(self.router.keepalive_timeout, self._idle_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timeout(self) -> None:
        self._timer = None
        if self._active is None and not self._message_open and not self.closed:
            self.transport.close()
