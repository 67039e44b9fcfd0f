"""One request through the router: pick a dyno, connect, relay the response, log one line.

An ``Exchange`` lives from the request head to the last response byte (or, for a WebSocket,
to the end of the tunnel). It is the ``ResponseListener`` of the dyno connection it uses,
writes the response into its ``ClientConnection``'s output (flushed once per read from the
dyno), and tells the connection when the response is sent (the connection owns ordering,
keep-alive and reading the client). Failures become Heroku's H codes: an error page when
nothing was sent to the client yet, a cut connection when something was.

Which dyno: ``pick_dyno`` (least outstanding of two random choices). A refused or timed-out
connect quarantines the dyno briefly and tries another. A request whose dyno closed the
connection before any byte of the response is sent again to another dyno when that is safe:
an idempotent method whose body the router still holds whole (nginx's rule); never once a
response has started, never a POST.

Every exchange that reached an app is counted in flight for its dyno (``DynoSlot``, which
the manager's draining waits on) and for its app (the metrics) until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from dynos.router.balancer import QUARANTINE, pick_dyno
from dynos.router.dyno_slot import DynoSlot
from dynos.router.errors import (
    H10,
    H12,
    H13,
    H14,
    H17,
    H18,
    H19,
    H20,
    H21,
    H27,
    H99,
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
from dynos.router.metrics import AppMetrics
from dynos.router.routing_table import AppRoute
from dynos.router.upstream import UpstreamConnection, UpstreamFailure

if TYPE_CHECKING:
    from dynos.router.client import ClientConnection

log = logging.getLogger(__name__)

HTML = b"text/html; charset=utf-8"
RETRY_BODY_LIMIT = 64 * 1024  # request body kept for a retry; a larger one is not retried


def _ms(seconds: float) -> int:
    return int(seconds * 1000 + 0.5)


class Exchange:
    """One request and its response."""

    __slots__ = (
        "abandoned",
        "app",
        "bytes_sent",
        "chunked",
        "client",
        "connect_ms",
        "deadline",
        "dyno",
        "failure",
        "fresh",
        "fwd",
        "http10",
        "keep_alive",
        "method",
        "pending",
        "pending_size",
        "replay",
        "replay_size",
        "request_complete",
        "response_done",
        "response_started",
        "route",
        "router",
        "sent_at",
        "slot",
        "stale_retried",
        "started",
        "stats",
        "status",
        "target",
        "task",
        "tried",
        "tunnel",
        "upgrade",
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
        started: float,
        upgrade: bytes = b"",
    ) -> None:
        self.client = client
        self.router = client.router
        self.method = method
        self.target = target
        self.http10 = http10
        self.keep_alive = keep_alive  # final once the response head is written
        self.fwd = fwd
        self.started = started  # time.monotonic() when the head was read
        self.upgrade = upgrade  # the protocol a tunnelled upgrade asks for ("websocket")
        self.route: AppRoute | None = None
        self.app = ""
        self.stats: AppMetrics | None = None  # set while counted in the app's in-flight
        self.slot: DynoSlot | None = None  # set while counted in the dyno's in-flight
        self.tried: list[DynoSlot] = []
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
        self.replay: list[bytes] | None = [] if method in IDEMPOTENT_METHODS else None
        self.replay_size = 0
        self.fresh = False  # the next attempt opens a new connection
        self.stale_retried = False
        self.request_complete = False
        self.response_started = False
        self.response_done = False
        self.chunked = False  # the router chunk-frames the response to the client
        self.tunnel = False
        self.status = 0
        self.bytes_sent = 0
        self.abandoned = False

    # ---- the request, as the client connection reads it ---------------------------------

    def start(self) -> None:
        """Route the request: answer it here, wait for a dyno to wake, or send it to one."""
        router = self.router
        route = router.table.lookup(self.fwd.host)
        if route is None:
            self._respond(404, no_such_app_page(self.fwd.host))  # no app: no log line
            return
        self.route = route
        self.app = route.app
        route.last_request_at = self.started
        stats = router.metrics.apps.get(route.app) or router.metrics.app(route.app)
        self.stats = stats
        stats.in_flight += 1
        if route.slots:
            self._dispatch()
        elif route.idle or route.waking_since is not None:
            self._hold(route)
        else:
            self._respond_error(H10 if route.crashed else H14)

    def body(self, data: bytes) -> None:
        """A piece of the request body: to the dyno, or held until it is connected."""
        if self.response_done:
            return  # answered already: the rest of the body is dropped
        replay = self.replay
        if replay is not None:
            self.replay_size += len(data)
            if self.replay_size > RETRY_BODY_LIMIT:
                self.replay = None
            else:
                replay.append(data)
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
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self._end()

    def check_deadline(self, now: float) -> None:
        """H12 when the response has not started by the app's request timeout."""
        if self.deadline and now >= self.deadline and not self.response_started:
            self.deadline = 0.0
            service = self._service_ms() if self.sent_at else None
            self._drop_upstream()
            self._respond_error(H12, connect_ms=self.connect_ms, service_ms=service)

    def platform_error(self) -> None:
        """The router itself failed on this request (a bug): H99, or cut if answering."""
        if self.response_started:
            self.response_done = True
            self.client.transport.abort()
            self.abandon()
            return
        self._drop_upstream()
        self._respond_error(H99, connect_ms=self.connect_ms)

    # ---- getting a dyno connection ------------------------------------------------------

    def _dispatch(self) -> None:
        router = self.router
        route = self.route
        assert route is not None
        slot = pick_dyno(route.slots, router.now, router.random, self.tried)
        if slot is None:  # every dyno was tried
            failure = self.failure
            sent = failure is H13 or failure is H17
            self._respond_error(
                failure,
                connect_ms=self.connect_ms,
                service_ms=self._service_ms() if sent else None,
            )
            return
        if not self.deadline:
            self.deadline = router.now + route.request_timeout
        slot.enter()
        self.slot = slot
        self.dyno = slot.endpoint.dyno
        conn = None if self.fresh or not slot.idle else router.pool.take(slot, router.now)
        if conn is not None:
            self.connect_ms = 0
            self._attach(conn)
        else:
            self.task = router.loop.create_task(self._connect(slot))

    async def _connect(self, slot: DynoSlot) -> None:
        router = self.router
        started = time.monotonic()
        failure: RouterError
        try:
            conn = await router.pool.open(slot)
        except TimeoutError:
            failure = H19
        except OSError:
            failure = H21
        else:
            self.task = None
            self.connect_ms = _ms(time.monotonic() - started)
            if self.abandoned or self.slot is not slot:
                conn.close()
            else:
                try:
                    self._attach(conn)
                except Exception:
                    log.exception("router: sending a request to %s failed", slot.dyno)
                    self.platform_error()
            return
        self.task = None
        self.connect_ms = _ms(time.monotonic() - started)
        if self.abandoned or self.slot is not slot:
            return
        slot.quarantined_until = router.now + QUARANTINE
        self.failure = failure
        self.tried.append(slot)
        self._release_slot()
        self._dispatch()  # the next dyno: each one is tried once

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        fwd = self.fwd
        data = [fwd.head]
        held = bool(self.pending)
        if held:
            if fwd.body is BodyKind.CHUNKED:
                for piece in self.pending:
                    data += chunk(piece)
            else:
                data += self.pending
            self.pending = []
            self.pending_size = 0
        if self.request_complete and fwd.body is BodyKind.CHUNKED:
            data.append(LAST_CHUNK)
        self.sent_at = time.monotonic()
        conn.send(self, data, head_request=self.method == b"HEAD", upgrade=bool(self.upgrade))
        client = self.client
        if client.client_congested:
            conn.pause_reading()
        if held:
            client.sync_reading()  # reading may have paused while the body was held

    def _hold(self, route: AppRoute) -> None:
        """Wait for the app to wake (its dyno was idle); H20 if it does not in time."""
        self.router.table.request_wake(route, self.router.now)
        self.task = self.router.loop.create_task(self._await_backends())

    async def _await_backends(self) -> None:
        router = self.router
        found = await router.table.wait_for_backends(self.app, router.wake_timeout)
        self.task = None
        if self.abandoned:
            return
        route = router.table.lookup(self.fwd.host)
        if found and route is not None and route.slots:
            self.route = route
            self._dispatch()
        else:
            self._respond_error(H20)

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
        if not self.request_complete or self.client.draining:
            self._decide_keep_alive()
        head = forward_response_head(
            status,
            reason,
            headers,
            chunked=self.chunked,
            keep_alive=self.keep_alive,
            http10_client=self.http10,
        )
        self.status = status
        self.response_started = True
        self.deadline = 0.0
        self._write(head)

    def response_body(self, data: bytes) -> None:
        out = self.client.out
        if self.chunked:
            self.bytes_sent += chunked_size(len(data))
            out += chunk(data)
        else:
            self.bytes_sent += len(data)
            out.append(data)

    def response_flush(self) -> None:
        self.client.flush()

    def response_complete(self, conn: UpstreamConnection, reusable: bool) -> None:
        self.upstream = None
        client = self.client
        if client.upstream_congested:
            client.set_upstream_congested(False)
        if self.chunked:
            self._write(LAST_CHUNK)
        client.flush()
        self.response_done = True
        service = int((time.monotonic() - self.sent_at) * 1000 + 0.5)
        self._log(None, self.status, self.bytes_sent, self.connect_ms, service)
        self._end()
        if reusable and self.request_complete:
            self.router.pool.put(conn, self.router.now)
        else:
            conn.close()
        client.response_sent(self)

    def response_upgraded(
        self, conn: UpstreamConnection, reason: bytes, headers: Headers, rest: bytes
    ) -> None:
        """The dyno switched protocols (101): from now on bytes pass through both ways."""
        self.tunnel = True
        self.status = 101
        self.response_started = self.response_done = True
        self.deadline = 0.0
        head = forward_response_head(
            101,
            reason,
            headers,
            chunked=False,
            keep_alive=True,
            http10_client=False,
            upgrade=self.upgrade,
        )
        self._write(head)
        if rest:
            self.client.out.append(rest)
        self.client.flush()
        # Logged now, as Heroku does; the dyno stays counted in flight until the tunnel ends.
        self._log(None, 101, self.bytes_sent, self.connect_ms, self._service_ms())
        self.client.start_tunnel(self)

    def upstream_failed(self, conn: UpstreamConnection, failure: UpstreamFailure) -> None:
        self._release()
        conn.close()
        bad = failure is UpstreamFailure.BAD_RESPONSE
        if self.response_started:
            # Part of the response is with the client: all that is left is to cut it off.
            self.response_done = True
            self.client.flush()
            error = H17 if bad else H18
            self._log(error, self.status, self.bytes_sent, self.connect_ms, self._service_ms())
            self._end()
            self.client.transport.abort()
            return
        self.failure = H17 if bad else H13
        if not bad and not conn.received and self.replay is not None:
            # Nothing of the response came: the dyno died, or closed a pooled connection just
            # as it was reused. Once more on a new connection (same dyno or not) for a reused
            # one; on another dyno otherwise.
            slot = self.slot
            if conn.requests > 1 and not self.stale_retried:
                self.stale_retried = True
                self.fresh = True
            elif slot is not None:
                self.tried.append(slot)
                self.fresh = False
            self._release_slot()
            self.pending = list(self.replay)
            self.pending_size = self.replay_size
            self._dispatch()
            return
        self._release_slot()
        self._respond_error(self.failure, connect_ms=self.connect_ms, service_ms=self._service_ms())

    def upstream_write_paused(self) -> None:
        self.client.set_upstream_congested(True)

    def upstream_write_resumed(self) -> None:
        self.client.set_upstream_congested(False)

    # ---- the tunnel (after a 101) ---------------------------------------------------------

    def tunnel_send(self, data: bytes) -> None:
        """Bytes from the client, for the dyno."""
        if self.upstream is not None:
            self.upstream.write(data)

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the dyno, for the client."""
        self.client.transport.write(data)

    def tunnel_closed(self) -> None:
        """The dyno ended the tunnel: close the client's side once what is buffered is sent."""
        self.upstream = None
        self._end()
        self.client.transport.close()

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
        self.deadline = 0.0
        self._write(response)
        self.client.flush()
        self._end()
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
        self.client.out.append(data)

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
        return _ms(time.monotonic() - self.sent_at)

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
            stats.observe(status, time.monotonic() - self.started)
