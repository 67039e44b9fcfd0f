"""One request through the router: pick a dyno, connect, relay the response, log one line.

An ``Exchange`` lives from the request head to the last response byte. It is the
``ResponseListener`` of the dyno connection it uses, writes the response to the client's
transport, and tells its ``ClientConnection`` when the response is sent (the connection owns
ordering, keep-alive and reading the client). Failures become Heroku's H codes: an error page
when nothing was sent to the client yet, a cut connection when something was.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from dynos.logs.logline import PLATFORM
from dynos.router.balancer import round_robin
from dynos.router.errors import (
    H10,
    H13,
    H14,
    H17,
    H18,
    H19,
    H21,
    H27,
    RouterError,
    application_error_page,
    no_such_app_page,
)
from dynos.router.forwarding import ForwardedRequest, forward_response_head
from dynos.router.http import (
    IDEMPOTENT_METHODS,
    LAST_CHUNK,
    BodyKind,
    Headers,
    chunk,
    chunked_size,
    simple_response,
)
from dynos.router.request_log import request_line
from dynos.router.routing_table import Backend
from dynos.router.upstream import UpstreamConnection, UpstreamFailure

if TYPE_CHECKING:
    from dynos.router.client import ClientConnection

HTML = b"text/html; charset=utf-8"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Exchange:
    """One request and its response."""

    __slots__ = (
        "abandoned",
        "app",
        "attempt",
        "backend",
        "bytes_sent",
        "candidates",
        "chunked",
        "client",
        "connect_ms",
        "connect_task",
        "fwd",
        "http10",
        "keep_alive",
        "method",
        "pending",
        "pending_size",
        "request_complete",
        "response_done",
        "response_started",
        "retried",
        "sent_at",
        "status",
        "target",
        "upstream",
    )

    def __init__(
        self,
        client: ClientConnection,
        method: bytes,
        target: bytes,
        *,
        http10: bool,
        keep_alive: bool,
        fwd: ForwardedRequest,
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.http10 = http10
        self.keep_alive = keep_alive  # final once the response head is written
        self.fwd = fwd
        self.app = ""
        self.candidates: tuple[Backend, ...] = ()
        self.attempt = 0
        self.backend: Backend | None = None
        self.upstream: UpstreamConnection | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.connect_ms: int | None = None
        self.sent_at = 0.0
        self.pending: list[bytes] = []  # request body read before the dyno connection is up
        self.pending_size = 0
        self.request_complete = False
        self.response_started = False
        self.response_done = False
        self.chunked = False  # the router chunk-frames the response to the client
        self.status = 0
        self.bytes_sent = 0
        self.retried = False
        self.abandoned = False

    # ---- the request, as the client connection reads it ---------------------------------

    def start(self) -> None:
        """Route the request: answer it here, or start connecting to a dyno."""
        router = self.client.router
        route = router.table.lookup(self.fwd.host)
        if route is None:
            self._respond(404, no_such_app_page(self.fwd.host))  # no app: no log line
            return
        self.app = route.app
        if not route.backends:
            self._respond_error(H10 if route.crashed else H14)
            return
        self.candidates = round_robin(route)
        self._dispatch()

    def body(self, data: bytes) -> None:
        """A piece of the request body: to the dyno, or held until it is connected."""
        if self.response_done:
            return  # answered already: the rest of the body is dropped
        conn = self.upstream
        if conn is not None:
            if self.fwd.body is BodyKind.CHUNKED:
                conn.writelines(chunk(data))
            else:
                conn.write(data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)

    def end_of_request(self) -> None:
        self.request_complete = True
        if self.response_done:
            self.client.response_sent(self)
        elif self.upstream is not None and self.fwd.body is BodyKind.CHUNKED:
            self.upstream.write(LAST_CHUNK)

    def interrupted(self) -> None:
        """The client left before the response was written (H27), or just after."""
        if not self.response_done and self.app:
            started = self.sent_at > 0
            self._log(
                H27,
                499,
                self.bytes_sent if self.response_started else None,
                self.connect_ms,
                self._service_ms() if started else None,
            )
        self.abandon()

    def abandon(self) -> None:
        """The client is gone (or its request broken): drop the dyno side."""
        self.abandoned = True
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    # ---- getting a dyno connection ------------------------------------------------------

    def _dispatch(self) -> None:
        backend = self.candidates[self.attempt]
        self.backend = backend
        conn = None if self.retried else self.client.router.pool.take(backend)
        if conn is not None:
            self.connect_ms = 0
            self._attach(conn)
        else:
            loop = asyncio.get_running_loop()
            self.connect_task = loop.create_task(self._connect(backend))

    async def _connect(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        pool = self.client.router.pool
        started = loop.time()
        failure: RouterError
        try:
            conn = await pool.open(backend)
        except TimeoutError:
            failure = H19
        except OSError:
            failure = H21
        else:
            self.connect_task = None
            self.connect_ms = _ms(loop.time() - started)
            if self.abandoned:
                conn.close()
            else:
                self._attach(conn)
            return
        self.connect_task = None
        self.connect_ms = _ms(loop.time() - started)
        if self.abandoned:
            return
        self.attempt += 1
        if self.attempt < len(self.candidates):
            self._dispatch()  # the next dyno: each one is tried once
        else:
            self._respond_error(failure, connect_ms=self.connect_ms)

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        data = [self.fwd.head]
        if self.fwd.body is BodyKind.CHUNKED:
            for piece in self.pending:
                data += chunk(piece)
            if self.request_complete:
                data.append(LAST_CHUNK)
        else:
            data += self.pending
        self.pending = []
        self.pending_size = 0
        self.sent_at = asyncio.get_running_loop().time()
        conn.send(self, data, head_request=self.method == b"HEAD")
        if self.client.client_congested:
            conn.pause_reading()
        self.client.sync_reading()

    # ---- ResponseListener: what the dyno connection reports ------------------------------

    def response_interim(self, status: int, reason: bytes, headers: Headers) -> None:
        if not self.http10:  # 1xx means nothing to an HTTP/1.0 client
            head = forward_response_head(
                status, reason, headers, chunked=False, keep_alive=True, http10_client=False
            )
            self._write(head)

    def response_head(self, status: int, reason: bytes, headers: Headers, body: BodyKind) -> None:
        if body is BodyKind.CHUNKED or body is BodyKind.UNTIL_CLOSE:
            if self.http10:
                self.keep_alive = False  # no chunks for HTTP/1.0: the body ends at close
            else:
                self.chunked = True
        self._decide_keep_alive()
        self.status = status
        self.response_started = True
        head = forward_response_head(
            status,
            reason,
            headers,
            chunked=self.chunked,
            keep_alive=self.keep_alive,
            http10_client=self.http10,
        )
        self._write(head)

    def response_body(self, data: bytes) -> None:
        transport = self.client.transport
        if self.chunked:
            self.bytes_sent += chunked_size(len(data))
            transport.writelines(chunk(data))
        else:
            self.bytes_sent += len(data)
            transport.write(data)

    def response_complete(self, conn: UpstreamConnection, reusable: bool) -> None:
        self._release()
        if self.chunked:
            self._write(LAST_CHUNK)
        self.response_done = True
        self._log(None, self.status, self.bytes_sent, self.connect_ms, self._service_ms())
        if reusable and self.request_complete:
            self.client.router.pool.put(conn)
        else:
            conn.close()
        self.client.response_sent(self)

    def upstream_failed(self, conn: UpstreamConnection, failure: UpstreamFailure) -> None:
        self._release()
        conn.close()
        bad = failure is UpstreamFailure.BAD_RESPONSE
        if self.response_started:
            # Part of the response is with the client: all that is left is to cut it off.
            self.response_done = True
            error = H17 if bad else H18
            self._log(error, self.status, self.bytes_sent, self.connect_ms, self._service_ms())
            self.client.transport.abort()
        elif (
            not bad
            and conn.requests > 1
            and not conn.received
            and not self.retried
            and self.fwd.body is BodyKind.NONE
            and self.method in IDEMPOTENT_METHODS
        ):
            # A pooled connection the dyno closed just as it was reused: once more, on a new
            # connection. (Only then: a request the dyno may have acted on is not repeated.)
            self.retried = True
            self._dispatch()
        else:
            self._respond_error(
                H17 if bad else H13, connect_ms=self.connect_ms, service_ms=self._service_ms()
            )

    def upstream_write_paused(self) -> None:
        self.client.set_upstream_congested(True)

    def upstream_write_resumed(self) -> None:
        self.client.set_upstream_congested(False)

    # ---- answering from the router itself ------------------------------------------------

    def _respond_error(
        self, error: RouterError, *, connect_ms: int | None = None, service_ms: int | None = None
    ) -> None:
        # Logged first: answering may start the next pipelined request, which logs too.
        self._log(error, error.status, None, connect_ms, service_ms)
        self._respond(error.status, application_error_page(self.app, self.fwd.request_id))

    def _respond(self, status: int, page: bytes) -> None:
        self._decide_keep_alive()
        response = simple_response(
            status,
            page,
            content_type=HTML,
            close=not self.keep_alive,
            http10_keep_alive=self.http10 and self.keep_alive,
            head_only=self.method == b"HEAD",
        )
        self.status = status
        self.response_started = self.response_done = True
        self._write(response)
        self.client.response_sent(self)

    def _decide_keep_alive(self) -> None:
        # A request body still on its way cannot be told apart from the next request if the
        # client stops sending it (Expect: 100-continue), so such a connection closes.
        unread_body = not self.request_complete and self.fwd.body is not BodyKind.NONE
        if unread_body or self.client.draining:
            self.keep_alive = False

    # ---- small things -------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.client.transport.write(data)

    def _release(self) -> None:
        self.upstream = None
        self.client.set_upstream_congested(False)

    def _service_ms(self) -> int:
        return _ms(asyncio.get_running_loop().time() - self.sent_at)

    def _log(
        self,
        error: RouterError | None,
        status: int,
        bytes_sent: int | None,
        connect_ms: int | None,
        service_ms: int | None,
    ) -> None:
        # The dyno is named only once the router has tried one (not for H10/H14).
        dyno = self.backend.dyno if self.backend is not None and connect_ms is not None else ""
        line = request_line(
            method=self.method.decode("latin-1"),
            path=self.target.decode("latin-1"),
            host=self.fwd.host,
            request_id=self.fwd.request_id,
            fwd=self.fwd.forwarded_for,
            dyno=dyno,
            connect_ms=connect_ms,
            service_ms=service_ms,
            status=status,
            bytes_sent=bytes_sent,
            error=error,
        )
        self.client.router.logs.emit(self.app, PLATFORM, "router", line)
