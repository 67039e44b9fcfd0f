"""The client side of the proxy: one keep-alive HTTP/1.1 connection from a browser or client.

``ClientConnection`` reads requests with httptools and starts an ``Exchange`` for each; its
base, ``pipeline.Pipeline``, answers them in order, writes, and keeps flow control and the
connection's timeouts.

Refused input: request_head.py has the rules (400, 414, 431), applied here as httptools reads
the head; a refused head closes the connection. A connection past the router's caps
(router/limits.py) gets 503 before it is read.

A WebSocket upgrade is forwarded with its ``Upgrade`` header; if the dyno answers 101 the
connection becomes a tunnel (``start_tunnel``, router/tunnel.py); if not, what the client
sent after the head is read as the next request. Other upgrades (h2c) reach the dyno as plain
requests.
"""

from __future__ import annotations

import logging
import time

import httptools

from dynos.router.context import RouterContext
from dynos.router.exchange import Exchange
from dynos.router.forwarding import MalformedRequest
from dynos.router.http import Headers
from dynos.router.pipeline import BUFFER_LIMIT, Pipeline
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

__all__ = ["BUFFER_LIMIT", "ClientConnection", "RequestIds"]  # (tests import them from here)

log = logging.getLogger(__name__)


class ClientConnection(Pipeline):
    """Reads a client's requests; ``Pipeline`` answers them in order."""

    def __init__(self, router: RouterContext, *, https: bool = False) -> None:
        super().__init__(router)
        # Came to the router's TLS port: the dyno is told so (X-Forwarded-Proto, -Port).
        self.https = https
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0  # bytes of the current head, as parsed
        self._head_reads = 0  # bytes of reads that ended inside the current head
        self._line: bytes | None = None  # the head so far, until its request line is checked
        self._completed = 0  # requests read to their end

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
        after_upgrade = b""
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
                # request; what follows its head is the next request, read below: not in
                # this handler, where Python would make this upgrade the context of any
                # error the next request's callbacks raise, and hide why it failed.
                after_upgrade = rest
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
        elif after_upgrade:
            self.data_received(after_upgrade)

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
            router_port=self.router.https_port if self.https else self.router.port,
            request_start_ms=int(time.time() * 1000),
            https=self.https,
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
