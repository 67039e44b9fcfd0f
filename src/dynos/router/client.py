"""The client side of the proxy: one keep-alive HTTP/1.1 connection from a browser or client.

Requests are parsed with httptools and answered in order: the ``active`` exchange is being
proxied, pipelined ones wait in ``queue`` (their bodies held, reading paused). An exchange ends
when its request has been read *and* its response written; then the next one starts, or the
connection waits idle for the router's ``keepalive_timeout``.

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

Refused input: request_head.py has the rules (400, 414, 431), applied here as httptools reads
the head; a refused head closes the connection. A connection past the router's caps
(router/limits.py) gets 503 before it is read.
When a response ends before its request body was read (an error page, a dyno answering
early), the connection closes: the response says ``Connection: close``, and the router keeps
reading and dropping for ``LINGER_TIMEOUT`` after its FIN, so that the client reads the
response instead of a reset.

A WebSocket upgrade is forwarded with its ``Upgrade`` header; if the dyno answers 101 the
connection becomes a tunnel (``start_tunnel``, router/tunnel.py); if not, what the client
sent after the head is read as the next request. Other upgrades (h2c) reach the dyno as plain
requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import cast

import httptools

from dynos.router.answer import HTML, Answer
from dynos.router.context import RouterContext
from dynos.router.errors import bad_request_page, too_many_connections_page
from dynos.router.exchange import Exchange
from dynos.router.forwarding import MalformedRequest
from dynos.router.http import Headers, simple_response
from dynos.router.request_head import (
    HEAD_READ_LIMIT,
    MAX_HEAD,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    RequestIds,
    forward_head,
    request_line_status,
)
from dynos.router.tunnel import Tunnel

log = logging.getLogger(__name__)

BUFFER_LIMIT = 256 * 1024  # request body held while a dyno connection opens
LINGER_TIMEOUT = 2.0
__all__ = ["BUFFER_LIMIT", "ClientConnection", "RequestIds"]  # RequestIds: request_head.py's
TOO_MANY_CONNECTIONS = simple_response(
    503, too_many_connections_page(), content_type=HTML, close=True
)


class ClientConnection(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, router: RouterContext) -> None:
        self.router = router
        self.draining = False  # close once the requests read so far are answered
        self.client_congested = False  # the client's socket is full: dynos' reading paused
        self.closed = False
        self.out: list[bytes] = []  # response bytes waiting for flush()
        self._loop = router.loop
        self._parser = httptools.HttpRequestParser(self)
        self.client_ip = ""  # the peer's address, "" when it has none (a Unix socket)
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0  # bytes of the current head, as parsed
        self._head_reads = 0  # bytes of reads that ended inside the current head
        self._line: bytes | None = None  # the head so far, until its request line is checked
        self._completed = 0  # requests read to their end
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

    # ---- reading requests ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.from_client(data)
            return
        if self._lingering:
            return
        if self._held is not None:
            self._held += data  # read before the pause took effect
            return
        between = not self._message_open  # this read starts a request (or the first one did)
        completed = self._completed
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if self._upgrading is not None:
                # Tunnel bytes if the dyno says 101, else the next request: wait and see.
                self._held = rest
                self.sync_reading()
            elif rest and not self._malformed:
                # An upgrade the router does not tunnel (h2c) went to the dyno as a plain
                # request; what follows its head is the next request.
                self.data_received(rest)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, MalformedRequest):
                self._malformed = cause.status
            else:
                self._platform_error(cause)
                return
        except httptools.HttpParserError:
            self._malformed = 400
        if self._message_open and self._parsing is None:  # this read ended inside a head
            if self._head_reads == 0:
                # Where the head starts is known when it starts this read (it often does).
                started_here = between and self._completed == completed
                self._line = data.lstrip(b"\r\n") if started_here else None
            elif self._line is not None:
                self._line += data
            self._head_reads += len(data)
            if self._head_reads > HEAD_READ_LIMIT:
                self._malformed = 431
            elif not self._malformed:
                self._check_request_line()
        else:
            self._head_reads = 0
            self._line = None
        if self._malformed:
            self._reject_malformed()

    def _check_request_line(self) -> None:
        """Refuse an HTTP/0.9 request line (``GET /``, no version) as soon as it ends.

        llhttp reads it as the start of a head whose headers are still to come, and would
        hold the connection until the header timeout; it tells only once more bytes come.
        """
        if self._parser.get_http_version() == "0.9":
            self._malformed = 400
            return
        line = self._line
        if line is not None:
            status = request_line_status(line)
            if status is not None:
                self._line = None  # nothing more to check
                self._malformed = status

    def on_message_begin(self) -> None:
        self._message_open = True
        self._head_since = self.router.now
        self._idle_since = 0.0
        self._url = b""
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) + len(self._parser.get_method()) + 10 > MAX_REQUEST_LINE:
            raise MalformedRequest("request line too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._head_size += size
        if size > MAX_HEADER_LINE or self._head_size > MAX_HEAD:
            raise MalformedRequest("header too large", 431)
        headers = self._headers
        if len(headers) >= MAX_HEADERS:
            raise MalformedRequest("too many headers", 431)
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        # (raising MalformedRequest here stops the parser; data_received refuses the input)
        self._head_since = 0.0
        if not self._open():
            return
        parser = self._parser
        method = parser.get_method()
        version = parser.get_http_version()
        url = self._url
        fwd, upgrade = forward_head(
            method,
            version,
            url,
            self._headers,
            upgrading=parser.should_upgrade(),
            client_ip=self.client_ip,
            router_port=self.router.port,
            request_start_ms=int(time.time() * 1000),
        )
        ex = Exchange(
            self,
            method,
            url,
            http10=version == "1.0",
            keep_alive=parser.should_keep_alive(),
            fwd=fwd,
            started=self.router.clock(),
            upgrade=upgrade,
        )
        if upgrade:
            self._upgrading = ex
        self._parsing = ex
        if self._active is None and not self._queue:
            self._active = ex  # the usual case: nothing before it
            ex.start()
            # start() may have answered at once (an error page) and let go of ``ex``: reading
            # pauses or resumes accordingly. self._active is not read again in this method:
            # compiled, mypyc trusts mypy's narrowing of it to Exchange by the assignment
            # above and raised TypeError on the None that start() left (issue 11).
            self.sync_reading()
        else:
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
        self._completed += 1
        ex = self._parsing
        self._parsing = None
        if ex is not None:
            ex.end_of_request()

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

    def _platform_error(self, cause: BaseException | None) -> None:
        """A bug in the router's own code while reading a request: H99, never a crash."""
        log.error("router: error while handling a request", exc_info=cause)
        self._malformed = 0
        ex = self._active
        if ex is not None and not ex.response_started and not self.closed:
            ex.keep_alive = False  # the parser's state is unknown: answer, then close
            ex.platform_error()
        elif not self.closed:
            self.transport.abort()

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
