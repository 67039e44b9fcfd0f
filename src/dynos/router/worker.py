"""One more router process, started by the server (see processes.py for the protocol).

    python -m dynos.router.worker HTTP_FD HTTPS_FD CONTROL_FD DOMAIN MAX_CONNECTIONS PER_CLIENT

It accepts on the server's listening sockets (HTTP, and HTTPS once the server has told it
the certificates to serve: it loads them from the server's files) and routes with a copy of
the server's routing table, kept up to date over the control socket; its log lines,
wake-ups and metrics go back the same way. When the control socket closes (the server is
gone) it stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dynos import server_log
from dynos.logs.hub import LogHub
from dynos.router.challenges import challenges_from_json
from dynos.router.limits import ConnectionLimits
from dynos.router.processes import LINE_LIMIT, LOG_EVERY, STATS_EVERY, encode_message
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable
from dynos.router.tls import from_json


class _Control:
    """The line-per-message socket to the server."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def send(self, message: dict[str, Any]) -> None:
        if not self._writer.is_closing():
            self._writer.write(encode_message(message))


class ForwardedLogs(LogHub):
    """Router lines go to the server's log hub, sent every LOG_EVERY seconds.

    Sending per loop turn costs a write here and a wake-up, a read and a parse in the server
    for every few requests; on a timer it costs that a few dozen times a second whatever the
    load. The request log hands each loop turn's lines over in one batch with one timestamp,
    which stays one list: ``[iso time, app, line, app, line, ...]``.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(ring_size=1)
        self._ship = send
        self._turns: list[list[str]] = []
        self._timer: asyncio.TimerHandle | None = None

    def emit(
        self, app: str, source: str, dyno: str, message: str, at: datetime | None = None
    ) -> None:
        self.emit_batch(source, dyno, at or datetime.now(UTC), [(app, message)])

    def emit_batch(
        self, source: str, dyno: str, at: datetime, lines: list[tuple[str, str]]
    ) -> None:
        # Only the router's lines come here (source dynos, dyno router): the server knows.
        turn = [at.isoformat()]
        for app, message in lines:
            turn.append(app)
            turn.append(message)
        self._turns.append(turn)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LOG_EVERY, self.send)

    def send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        turns, self._turns = self._turns, []
        if turns:
            self._ship({"logs": turns})


async def serve(
    listening: socket.socket,
    tls_listening: socket.socket,
    control_sock: socket.socket,
    domain: str,
    limits: ConnectionLimits,
    repeats: server_log.RepeatFilter | None = None,
) -> None:
    reader, writer = await asyncio.open_connection(sock=control_sock, limit=LINE_LIMIT)
    control = _Control(writer)
    table = RoutingTable(domain, on_wake=lambda app: control.send({"wake": app}))
    logs = ForwardedLogs(control.send)
    router = Router(table, logs, limits=limits)
    await router.start(sock=listening)
    stats = asyncio.create_task(_report(router, logs, control))
    counting = asyncio.create_task(server_log.flush_now_and_then(repeats)) if repeats else None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # the server says when to stop
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # (a Ctrl-C reaches the whole group)
    drains: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            message = json.loads(line)
            if "routes" in message:
                table.apply_snapshot(message["routes"])
            elif "certificates" in message:
                router.tls.update(from_json(message["certificates"]))
                if router.https_port == 0 and router.tls.ready:
                    await router.start_https(sock=tls_listening)
            elif "drain" in message:
                task = asyncio.create_task(_drain(router, logs, control, *message["drain"]))
                drains.add(task)
                task.add_done_callback(drains.discard)
            elif "challenges" in message:
                challenge_id, challenges = message["challenges"]
                table.challenges = challenges_from_json(challenges)
                control.send({"challenged": challenge_id})
            elif "close" in message:
                break
        else:
            router.drain_timeout = 0.0  # the server is gone: nobody would get the answers' logs
    finally:
        stats.cancel()
        if counting is not None:
            counting.cancel()
        await router.close()
        _send_stats(router, logs, control)
        # The last lines and figures are written out before the loop (and the process) ends.
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        if repeats is not None:
            repeats.flush(every=True)


async def _drain(
    router: Router,
    logs: ForwardedLogs,
    control: _Control,
    drain_id: int,
    app: str,
    dyno: str,
    timeout: float,
) -> None:
    await router.table.wait_drained(app, dyno, timeout)
    # The drained requests' lines go first: the server logs the dyno's stop after this.
    router.flush_logs()
    logs.send()
    control.send({"drained": drain_id})


def _send_stats(router: Router, logs: ForwardedLogs, control: _Control) -> None:
    router.flush_logs()
    logs.send()
    table = router.table
    control.send(
        {
            "stats": {app: m.to_json() for app, m in router.metrics.apps.items()},
            "last": {app: table.last_request_at(app) for app in router.metrics.apps},
        }
    )


async def _report(router: Router, logs: ForwardedLogs, control: _Control) -> None:
    while True:
        await asyncio.sleep(STATS_EVERY)
        _send_stats(router, logs, control)


def main() -> None:
    listening_fd, tls_fd, control_fd = (int(arg) for arg in sys.argv[1:4])
    domain = sys.argv[4]
    limits = ConnectionLimits(total=int(sys.argv[5]), per_client=int(sys.argv[6]))
    # Its lines go to the server's stderr, as the server's own do, repeats held back alike.
    repeats = server_log.configure(f"dynos router process {os.getpid()}")
    listening = socket.socket(fileno=listening_fd)
    tls_listening = socket.socket(fileno=tls_fd)
    control = socket.socket(fileno=control_fd)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(listening, tls_listening, control, domain, limits, repeats))


if __name__ == "__main__":
    main()
