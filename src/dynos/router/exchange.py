"""One request through the router: pick a dyno, connect, relay the response, log one line.

An ``Exchange`` lives from the request head to the last response byte (or, for a WebSocket,
to the end of its ``Tunnel``). Its state and what it writes to the client are answer.py's
(its base, ``Answer``); here it finds a dyno and relays what the dyno answers: it is the
``ResponseListener`` of the dyno connection it uses, and writes the response into its client
connection's output (flushed once per read from the dyno). Failures become Heroku's H codes:
an error page when nothing was sent to the client yet, a cut connection when something was.

Which dyno: ``pick_dyno`` (least outstanding of two random choices). A refused or timed-out
connect quarantines the dyno briefly and tries another; whether a dyno closing the
connection sends the request again is retry.py's rule.

Every exchange that reached an app is counted in flight for its dyno (``DynoSlot``, which
the manager's draining waits on) and for its app (the metrics) until it ends.
"""

from __future__ import annotations

import logging

from dynos.router.answer import ABANDONED, DONE, RECEIVED, TUNNEL, Answer, whole_ms
from dynos.router.balancer import QUARANTINE, pick_dyno
from dynos.router.challenges import challenge_answer
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
    H99,
    RouterError,
    no_such_app_page,
)
from dynos.router.exchange_state import ResponseState
from dynos.router.forwarding import forward_response_head
from dynos.router.http import LAST_CHUNK, BodyKind, Headers, chunk, chunked_size
from dynos.router.retry import Retry, retry_after_close
from dynos.router.routing_table import AppRoute
from dynos.router.tunnel import Tunnel
from dynos.router.upstream import UpstreamConnection, UpstreamFailure

log = logging.getLogger(__name__)

WAKING = ResponseState.WAKING
CONNECTING = ResponseState.CONNECTING
SENT = ResponseState.SENT
RESPONDING = ResponseState.RESPONDING
PLAIN_TEXT = b"text/plain"


class Exchange(Answer):
    """One request and its response: the dyno side."""

    __slots__ = ()

    # ---- the request, as the client connection reads it ---------------------------------

    def start(self) -> None:
        """Route the request: answer it here, wait for a dyno to wake, or send it to one."""
        router = self.router
        table = router.table
        if table.challenges:  # an ACME order is open: its HTTP-01 answers come first
            answer = challenge_answer(table.challenges, self.method, self.fwd.host, self.target)
            if answer is not None:
                self._respond(200, answer, PLAIN_TEXT)  # no app: no log line
                return
        route = table.lookup(self.fwd.host)
        if route is None:
            self._respond(404, no_such_app_page(self.fwd.host))  # no app: no log line
            return
        self.route = route
        self.app = route.app
        route.last_request_at = self.started
        stats = router.metrics.apps.get(route.app) or router.metrics.app(route.app)
        self.stats = stats
        stats.in_flight += 1
        stats.arrived += 1
        if route.slots:
            self._dispatch()
        elif route.idle or route.waking_since is not None:
            self._hold(route)
        else:
            self._respond_error(H10 if route.crashed else H14)

    def check_deadline(self, now: float) -> None:
        """H12 when the response has not started by the app's request timeout."""
        if self.deadline and now >= self.deadline and not self.response_started:
            self.deadline = 0.0
            service = self._service_ms() if self.sent_at else None
            self._drop_upstream()
            self._respond_error(H12, connect_ms=self.connect_ms, service_ms=service)

    def platform_error(self) -> None:
        """The router itself failed on this request (a bug): H99, or cut if answering."""
        if self.state is ABANDONED:
            return
        if self.response_started:
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
        attempts = self.attempts
        slot = pick_dyno(route.slots, router.now, router.random, attempts.tried)
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
        new = attempts.new_connection
        conn = None if new or not slot.idle else router.pool.take(slot, router.now)
        if conn is not None:
            self.connect_ms = 0
            self._attach(conn)
        else:
            self._move(CONNECTING)
            self.task = router.loop.create_task(self._connect(slot))

    async def _connect(self, slot: DynoSlot) -> None:
        router = self.router
        clock = router.clock
        started = clock()
        failure: RouterError
        try:
            conn = await router.pool.open(slot)
        except TimeoutError:
            failure = H19
        except OSError:
            failure = H21
        else:
            self.task = None
            self.connect_ms = whole_ms(clock() - started)
            if self.state is ABANDONED or self.slot is not slot:
                conn.close()
            else:
                try:
                    self._attach(conn)
                except Exception:
                    log.exception("router: sending a request to %s failed", slot.dyno)
                    self.platform_error()
            return
        self.task = None
        self.connect_ms = whole_ms(clock() - started)
        if self.state is ABANDONED or self.slot is not slot:
            return
        slot.quarantined_until = router.now + QUARANTINE
        self.failure = failure
        self.attempts.connect_failed(slot)
        self._release_slot()
        self._dispatch()  # the next dyno: each one is tried once

    def _attach(self, conn: UpstreamConnection) -> None:
        self._move(SENT)
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
        if self.request_state is RECEIVED and fwd.body is BodyKind.CHUNKED:
            data.append(LAST_CHUNK)
        self.sent_at = self.router.clock()
        conn.send(self, data, head_request=self.method == b"HEAD", upgrade=bool(self.upgrade))
        client = self.client
        if client.client_congested:
            conn.pause_reading()
        if held:
            client.sync_reading()  # reading may have paused while the body was held

    def _hold(self, route: AppRoute) -> None:
        """Wait for the app to wake (its dyno was idle); H20 if it does not in time."""
        self._move(WAKING)
        self.router.table.request_wake(route, self.router.now)
        self.task = self.router.loop.create_task(self._await_backends())

    async def _await_backends(self) -> None:
        router = self.router
        found = await router.table.wait_for_backends(self.app, router.wake_timeout)
        self.task = None
        if self.state is ABANDONED:
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
        if self.request_state is not RECEIVED or self.client.draining:
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
        self._move(RESPONDING)
        self.deadline = 0.0
        self._write(head)

    def response_body(self, data: bytes) -> None:
        out = self.out
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
        self._move(DONE)
        self._log(None, self.status, self.bytes_sent, self.connect_ms, self._service_ms())
        self._end()
        if reusable and self.request_state is RECEIVED:
            self.router.pool.put(conn, self.router.now)
        else:
            conn.close()
        client.response_sent(self)

    def response_upgraded(
        self, conn: UpstreamConnection, reason: bytes, headers: Headers, rest: bytes
    ) -> None:
        """The dyno switched protocols (101): from now on bytes pass through both ways."""
        client = self.client
        # Opened first: what the dyno sends from now on goes to the tunnel.
        tunnel = self.tunnel = Tunnel(
            client.transport,
            conn,
            ended=self._tunnel_ended,
            congested=client.set_upstream_congested,
        )
        self.upstream = None
        self._move(TUNNEL)
        self.status = 101
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
            self.out.append(rest)
        client.flush()
        # Logged now, as Heroku does; the dyno stays counted in flight until the tunnel ends.
        self._log(None, 101, self.bytes_sent, self.connect_ms, self._service_ms())
        client.start_tunnel(tunnel)

    def _tunnel_ended(self) -> None:
        """The dyno closed the tunnel (which closes the client's side)."""
        self._move(DONE)
        self._end()

    def upstream_failed(self, conn: UpstreamConnection, failure: UpstreamFailure) -> None:
        self._release()
        conn.close()
        bad = failure is UpstreamFailure.BAD_RESPONSE
        if self.response_started:
            # Part of the response is with the client: all that is left is to cut it off.
            self._move(DONE)
            self.client.flush()
            error = H17 if bad else H18
            self._log(error, self.status, self.bytes_sent, self.connect_ms, self._service_ms())
            self._end()
            self.client.transport.abort()
            return
        self.failure = H17 if bad else H13
        replay = self.replay
        pieces = replay.pieces if replay is not None else None
        retry = retry_after_close(
            malformed=bad,
            received=conn.received,
            replayable=pieces is not None,
            reused=conn.requests > 1,
            new_connection_tried=self.attempts.new_connection_tried,
        )
        if retry is not Retry.NO and replay is not None and pieces is not None:
            self.attempts.closed(self.slot, retry)
            self._release_slot()
            self.pending = list(pieces)
            self.pending_size = replay.size
            self._dispatch()
            return
        self._release_slot()
        self._respond_error(self.failure, connect_ms=self.connect_ms, service_ms=self._service_ms())

    def upstream_write_paused(self) -> None:
        self.client.set_upstream_congested(True)

    def upstream_write_resumed(self) -> None:
        self.client.set_upstream_congested(False)
