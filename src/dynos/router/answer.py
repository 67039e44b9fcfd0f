"""An exchange as its client sees it: the request read, the answer written, the log line.

``Answer`` is the base of ``exchange.Exchange`` (which finds a dyno and relays what it
answers): it holds one request's state (the two sides' states of exchange_state.py, moved
only through their tables), writes into the client connection's output, answers from the
router itself (a 404 or an H-code page), writes the request's one log line, and ends its
in-flight counts. The two classes are one object; the split keeps each module to one job.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from dynos.router.context import RouterContext
from dynos.router.dyno_slot import DynoSlot
from dynos.router.errors import H21, H27, RouterError, application_error_page
from dynos.router.exchange_state import (
    STARTED,
    RequestState,
    ResponseState,
    check_request,
    check_response,
)
from dynos.router.forwarding import ForwardedRequest
from dynos.router.http import LAST_CHUNK, BodyKind, chunk, simple_response
from dynos.router.metrics import AppMetrics
from dynos.router.retry import Attempts, ReplayBody
from dynos.router.routing_table import AppRoute
from dynos.router.tunnel import Tunnel
from dynos.router.upstream import UpstreamConnection

HTML = b"text/html; charset=utf-8"
RECEIVED = RequestState.RECEIVED
ROUTING = ResponseState.ROUTING
TUNNEL = ResponseState.TUNNEL
DONE = ResponseState.DONE
ABANDONED = ResponseState.ABANDONED


class ClientSide(Protocol):
    """What an exchange uses of its client connection (``client.ClientConnection``)."""

    router: RouterContext
    transport: asyncio.Transport
    out: list[bytes]  # response bytes waiting for flush(); the same list for good
    draining: bool
    client_congested: bool
    upstream_congested: bool

    def flush(self) -> None: ...

    def response_sent(self, ex: Answer) -> None: ...

    def start_tunnel(self, tunnel: Tunnel) -> None: ...

    def set_upstream_congested(self, congested: bool) -> None: ...

    def sync_reading(self) -> None: ...


def whole_ms(seconds: float) -> int:
    """Seconds as whole milliseconds, rounded (the log line's connect= and service=)."""
    return int(seconds * 1000 + 0.5)


class Answer:
    """One request and what it gets back (the state and the writing; see exchange.py)."""

    __slots__ = (
        "app",
        "attempts",
        "bytes_sent",
        "chunked",
        "client",
        "connect_ms",
        "deadline",
        "dyno",
        "failure",
        "fwd",
        "http10",
        "keep_alive",
        "method",
        "out",
        "pending",
        "pending_size",
        "replay",
        "request_state",
        "route",
        "router",
        "sent_at",
        "slot",
        "started",
        "state",
        "stats",
        "status",
        "target",
        "task",
        "tunnel",
        "upgrade",
        "upstream",
    )

    def __init__(
        self,
        client: ClientSide,
        method: bytes,
        target: bytes,
        *,
        http10: bool,
        keep_alive: bool,
        fwd: ForwardedRequest,
        started: float,
        upgrade: bytes = b"",
    ) -> None:
        self.client = client
        self.out = client.out
        self.router = client.router
        self.method = method
        self.target = target
        self.http10 = http10
        self.keep_alive = keep_alive  # final once the response head is written
        self.fwd = fwd
        self.started = started  # router.clock() when the head was read
        self.upgrade = upgrade  # the protocol a tunnelled upgrade asks for ("websocket")
        self.route: AppRoute | None = None
        self.app = ""
        self.stats: AppMetrics | None = None  # set while counted in the app's in-flight
        self.slot: DynoSlot | None = None  # set while counted in the dyno's in-flight
        self.attempts: Attempts[DynoSlot] = Attempts()
        self.dyno = ""  # the dyno of the last attempt, for the log line
        self.failure: RouterError = H21  # why the last attempt failed
        self.upstream: UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None  # connecting, or waiting for a dyno to wake
        self.connect_ms: int | None = None
        self.sent_at = 0.0
        self.deadline = 0.0  # H12: the response must start by then (0: no deadline running)
        self.pending: list[bytes] = []  # request body not yet sent to a dyno
        self.pending_size = 0
        # The request body so far, for a retry; None when the request is never retried.
        self.replay = ReplayBody.for_method(method)
        self.request_state = RequestState.RECEIVING
        self.state = ROUTING
        self.chunked = False  # the router chunk-frames the response to the client
        self.tunnel: Tunnel | None = None  # after a 101
        self.status = 0
        self.bytes_sent = 0

    # ---- where it stands ----------------------------------------------------------------

    @property
    def request_complete(self) -> bool:
        return self.request_state is RECEIVED

    @property
    def response_started(self) -> bool:
        """Something of the response went to the client: an error can only cut it off."""
        return self.state in STARTED

    @property
    def response_done(self) -> bool:
        """Nothing more of the response will go to the client (a tunnel is open, or the
        whole response, a page or a cut-off one was written)."""
        state = self.state
        return state is DONE or state is TUNNEL

    def _move(self, state: ResponseState) -> None:
        self.state = check_response(self.state, state)

    # ---- the request, as the client connection reads it ---------------------------------

    def body(self, data: bytes) -> None:
        """A piece of the request body: to the dyno, or held until it is connected."""
        if self.response_done or self.state is ABANDONED:
            return  # answered already, or nobody to answer: the rest of the body is dropped
        replay = self.replay
        if replay is not None:
            replay.add(data)
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
        self.request_state = check_request(self.request_state, RECEIVED)
        if self.response_done:
            self.client.response_sent(self)
        elif self.upstream is not None and self.fwd.body is BodyKind.CHUNKED:
            self.upstream.write(LAST_CHUNK)

    def interrupted(self) -> None:
        """The client left before the response was written (H27), or just after."""
        if self.state is ABANDONED:
            return
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
        if self.state is ABANDONED:
            return
        self._move(ABANDONED)
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if self.tunnel is not None:
            self.tunnel.close()
        self._end()

    # ---- answering from the router itself ------------------------------------------------

    def _respond_error(
        self, error: RouterError, *, connect_ms: int | None = None, service_ms: int | None = None
    ) -> None:
        # Logged first: answering may start the next pipelined request, which logs too.
        self._log(error, error.status, None, connect_ms, service_ms)
        self._respond(error.status, application_error_page(self.app, self.fwd.request_id))

    def _respond(self, status: int, page: bytes, content_type: bytes = HTML) -> None:
        self._decide_keep_alive()
        response = simple_response(
            status,
            page,
            content_type=content_type,
            close=not self.keep_alive,
            http10_keep_alive=self.http10 and self.keep_alive,
            head_only=self.method == b"HEAD",
        )
        self.status = status
        self._move(DONE)
        self.deadline = 0.0
        self._write(response)
        self.client.flush()
        self._end()
        self.client.response_sent(self)

    def _decide_keep_alive(self) -> None:
        # A request body still on its way cannot be told apart from the next request if the
        # client stops sending it (Expect: 100-continue), so such a connection closes.
        unread_body = self.request_state is not RECEIVED and self.fwd.body is not BodyKind.NONE
        if unread_body or self.client.draining:
            self.keep_alive = False

    # ---- small things -------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.out.append(data)

    def _release(self) -> None:
        self.upstream = None
        if self.client.upstream_congested:
            self.client.set_upstream_congested(False)

    def _drop_upstream(self) -> None:
        """Give up on the dyno side of an attempt that has not answered."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        conn = self.upstream
        if conn is not None:
            self._release()
            conn.close()
        self._release_slot()

    def _release_slot(self) -> None:
        slot = self.slot
        if slot is not None:
            self.slot = None
            slot.leave()

    def _end(self) -> None:
        """Nothing of this exchange is in flight any more (idempotent)."""
        slot = self.slot
        if slot is not None:
            self.slot = None
            slot.leave()
        stats = self.stats
        if stats is not None:
            self.stats = None
            stats.in_flight -= 1

    def _service_ms(self) -> int:
        return whole_ms(self.router.clock() - self.sent_at)

    def _log(
        self,
        error: RouterError | None,
        status: int,
        bytes_sent: int | None,
        connect_ms: int | None,
        service_ms: int | None,
    ) -> None:
        # The dyno is named only once the router has tried one (not for H10/H14).
        fwd = self.fwd
        self.router.request_log.add(
            self.app,
            (
                self.method,
                self.target,
                fwd.host,
                fwd.request_id,
                fwd.forwarded_for,
                self.dyno if connect_ms is not None else "",
                connect_ms,
                service_ms,
                status,
                bytes_sent,
                error,
            ),
        )
        stats = self.stats
        if stats is not None:
            now = self.router.clock()
            stats.observe(status, now - self.started)
            if error is not None:
                stats.observe_error(error.code)
            if service_ms is not None and self.sent_at:
                queue_ms = int((self.sent_at - self.started) * 1000.0 + 0.5)
                stats.observe_dyno(service_ms, queue_ms, error is None)
