"""More router processes on the router's port: one event loop per core, as nginx's workers.

One Python process proxies on one core at a time, and while the kernel runs something else
on that core every request in it waits: on a busy machine that is what the slowest requests
are made of (docs/performance.md: one router process has twice nginx's p99; two have the
same). So the server starts ``count - 1`` more router processes (``python -m
dynos.router.worker``) that accept on the same listening socket, inherited. The server stays
the one owner of the routes, the logs and the metrics; each process talks to it over a
socketpair, one JSON object a line:

    server -> process   {"routes": [...]}               every change of the routing table
                        {"drain": [id, app, dyno, timeout]}
                        {"close": true}                 stop accepting, finish, exit
    process -> server   {"logs": [[app, iso time, line], ...]}   router lines, per loop turn
                        {"wake": app}                   a request waits for a sleeping app
                        {"drained": id}                 no request in flight to that dyno
                        {"stats": {...}, "last": {...}} metrics and last request per app,
                                                        every STATS_EVERY seconds

The routing table's hooks (``on_change``, ``remote_drain``) make this invisible to the
manager: taking a dyno out of its route reaches every process before the drain request that
follows it (one ordered stream each), and ``wait_drained`` returns once every process has no
request in flight to it. A process that dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import sys
from datetime import datetime
from typing import Any

from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.router.metrics import AppMetrics
from dynos.router.proxy import Router

log = logging.getLogger(__name__)

STATS_EVERY = 0.5  # seconds between a process's metrics reports
RESTART_DELAY = 1.0  # seconds before a router process that died is started again
LINE_LIMIT = 16 * 1024 * 1024  # one message (a routing table, a batch of log lines)


def default_count() -> int:
    """As nginx's ``worker_processes auto``: one router process per core."""
    return max(1, len(os.sched_getaffinity(0)))


class RouterProcesses:
    """The router processes beside ``router`` (the server's own), on its listening socket."""

    def __init__(self, router: Router, logs: LogHub, count: int) -> None:
        self._router = router
        self._logs = logs
        self._count = count
        self._processes: dict[int, _Process] = {}
        self._drain_ids = itertools.count(1)
        self._closing = False
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._count <= 1:
            return
        table = self._router.table
        table.on_change = self._broadcast_routes
        table.remote_drain = self._drain
        for number in range(1, self._count):
            await self._spawn(number)

    async def close(self) -> None:
        """Let every process finish its requests (the router's drain timeout) and exit."""
        self._closing = True
        table = self._router.table
        table.on_change = None
        table.remote_drain = None
        processes = list(self._processes.values())
        for process in processes:
            process.send({"close": True})
        await asyncio.gather(*(p.stop(self._router.drain_timeout + 5) for p in processes))
        self._router.metrics.elsewhere.clear()

    # ---- the routing table's hooks ---------------------------------------------------------

    def _broadcast_routes(self) -> None:
        message = {"routes": self._router.table.snapshot()}
        for process in self._processes.values():
            process.send(message)

    async def _drain(self, app: str, dyno: str, timeout: float) -> None:
        waits = []
        for process in self._processes.values():
            drain_id = next(self._drain_ids)
            waits.append(process.drain(drain_id, app, dyno, timeout))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)

    # ---- the processes ---------------------------------------------------------------------

    async def _spawn(self, number: int) -> None:
        ours, theirs = socket.socketpair()
        listening = self._router.listening_fd
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dynos.router.worker",
            str(listening),
            str(theirs.fileno()),
            self._router.table.domain,
            pass_fds=(listening, theirs.fileno()),
            stdin=asyncio.subprocess.DEVNULL,
        )
        theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=LINE_LIMIT)
        child = _Process(number, process, reader, writer)
        self._processes[number] = child
        child.send({"routes": self._router.table.snapshot()})
        child.reading = asyncio.create_task(self._read(child))

    async def _read(self, child: _Process) -> None:
        table = self._router.table
        metrics = self._router.metrics
        try:
            while line := await child.reader.readline():
                message = json.loads(line)
                if "logs" in message:
                    for app, at, text in message["logs"]:
                        self._logs.emit(app, PLATFORM, "router", text, datetime.fromisoformat(at))
                elif "stats" in message:
                    metrics.elsewhere[child.number] = {
                        app: AppMetrics.from_json(data) for app, data in message["stats"].items()
                    }
                    for app, at in message["last"].items():
                        table.note_request(app, at)
                elif "drained" in message:
                    child.drained(message["drained"])
                elif "wake" in message:
                    table.wake(message["wake"])
        except (ConnectionError, ValueError) as exc:
            log.error("router process %d: %s", child.number, exc)
        child.lost()
        metrics.elsewhere.pop(child.number, None)
        status = await child.process.wait()
        if self._closing:
            return
        self._processes.pop(child.number, None)
        log.error("router process %d exited (status %s): starting it again", child.number, status)
        await asyncio.sleep(RESTART_DELAY)
        if not self._closing:
            await self._spawn(child.number)


class _Process:
    def __init__(
        self,
        number: int,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.number = number
        self.process = process
        self.reader = reader
        self.writer = writer
        self.reading: asyncio.Task[None] | None = None
        self._drains: dict[int, asyncio.Future[None]] = {}

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(message).encode() + b"\n")

    async def drain(self, drain_id: int, app: str, dyno: str, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._drains[drain_id] = waiter
        self.send({"drain": [drain_id, app, dyno, timeout]})
        try:
            await waiter
        finally:
            self._drains.pop(drain_id, None)

    def drained(self, drain_id: int) -> None:
        waiter = self._drains.get(drain_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def lost(self) -> None:
        """The process is gone: nothing is in flight in it any more."""
        for waiter in self._drains.values():
            if not waiter.done():
                waiter.set_result(None)
        self.writer.close()

    async def stop(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self.reading is not None:
            await asyncio.gather(self.reading, return_exceptions=True)
