"""One more router process, started by the server (see processes.py for the protocol).

    python -m dynos.router.worker LISTENING_FD CONTROL_FD DOMAIN

It accepts on the server's listening socket and routes with a copy of the server's routing
table, kept up to date over the control socket; its log lines, wake-ups and metrics go back
the same way. When the control socket closes (the server is gone) it stops at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from dynos.logs.hub import LogHub
from dynos.router.processes import LINE_LIMIT, STATS_EVERY
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable


class _Control:
    """The line-per-message socket to the server."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def send(self, message: dict[str, Any]) -> None:
        if not self._writer.is_closing():
            self._writer.write(json.dumps(message).encode() + b"\n")


class ForwardedLogs(LogHub):
    """Router lines go to the server's log hub: collected, sent once per loop turn."""

    def __init__(self, control: _Control) -> None:
        super().__init__(ring_size=1)
        self._control = control
        self._lines: list[list[str]] = []

    def emit(
        self, app: str, source: str, dyno: str, message: str, at: datetime | None = None
    ) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_soon(self._send)
        self._lines.append([app, (at or datetime.now(UTC)).isoformat(), message])

    def _send(self) -> None:
        lines, self._lines = self._lines, []
        self._control.send({"logs": lines})


async def serve(listening: socket.socket, control_sock: socket.socket, domain: str) -> None:
    reader, writer = await asyncio.open_connection(sock=control_sock, limit=LINE_LIMIT)
    control = _Control(writer)
    table = RoutingTable(domain)
    table.on_wake = lambda app: control.send({"wake": app})
    router = Router(table, ForwardedLogs(control))
    await router.start("", 0, sock=listening)
    stats = asyncio.create_task(_report(router, control))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # the server says when to stop
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # (a Ctrl-C reaches the whole group)
    drains: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            message = json.loads(line)
            if "routes" in message:
                table.apply_snapshot(message["routes"])
            elif "drain" in message:
                task = asyncio.create_task(_drain(table, control, *message["drain"]))
                drains.add(task)
                task.add_done_callback(drains.discard)
            elif "close" in message:
                break
        else:
            router.drain_timeout = 0.0  # the server is gone: nobody would get the answers' logs
    finally:
        stats.cancel()
        await router.close()
        _send_stats(router, control)
        writer.close()


async def _drain(
    table: RoutingTable, control: _Control, drain_id: int, app: str, dyno: str, timeout: float
) -> None:
    await table.wait_drained(app, dyno, timeout)
    control.send({"drained": drain_id})


def _send_stats(router: Router, control: _Control) -> None:
    router.flush_logs()
    table = router.table
    control.send(
        {
            "stats": {app: m.to_json() for app, m in router.metrics.apps.items()},
            "last": {app: table.last_request_at(app) for app in router.metrics.apps},
        }
    )


async def _report(router: Router, control: _Control) -> None:
    while True:
        await asyncio.sleep(STATS_EVERY)
        _send_stats(router, control)


def main() -> None:
    listening_fd, control_fd, domain = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    listening = socket.socket(fileno=listening_fd)
    control = socket.socket(fileno=control_fd)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(listening, control, domain))


if __name__ == "__main__":
    main()
