"""More router processes on the router's port (``--router-processes``), as nginx's workers.

One Python process proxies on one core at most. Where the router has more cores to itself
than one (not where the dynos and the clients keep every core busy: there each process wakes
for fewer events at a time, and every request costs about half as much CPU again, measured in
docs/performance.md), the server starts ``count - 1`` more router processes (``python -m
dynos.router.worker``), each accepting on a listening socket of its own that the server bound
to the router's port with ``SO_REUSEPORT`` (``listening_sockets``) and that it inherits. The
kernel spreads new connections evenly over the sockets by a hash of their addresses; with one
shared socket, whichever process woke first took a burst of connections, and the busier one
set the pace. The server keeps every socket open, so a process that dies and is started again
finds the connections that arrived meanwhile waiting in its socket's queue. The server stays
the one owner of the routes, the logs and the metrics; each process talks to it over a
socketpair, one JSON object a line:

    server -> process   {"routes": [...]}               every change of the routing table
                        {"certificates": [...]}         every change of the certificates
                                                        served (names and file paths)
                        {"drain": [id, app, dyno, timeout]}
                        {"challenges": [id, {token: [names, answer]}]}
                                                        the open ACME challenges (challenges.py)
                        {"close": true}                 stop accepting, finish, exit
    process -> server   {"logs": [[iso time, app, line, app, line, ...], ...]}
                                                        router lines, a list per loop turn,
                                                        every LOG_EVERY seconds
                        {"wake": app}                   a request waits for a sleeping app
                        {"drained": id}                 no request in flight to that dyno
                        {"challenged": id}              the challenges are in place
                        {"stats": {...}, "last": {...}} metrics and last request per app,
                                                        every STATS_EVERY seconds

``RouterProcesses`` is the routing table's ``followers`` (given to the table when it is
made), which makes this invisible to the manager: taking a dyno out of its route reaches every
process before the drain request that follows it (one ordered stream each), and
``wait_drained`` returns once every process has no request in flight to it. A process that
dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import sys
import time
from datetime import datetime
from typing import Any

from dynos.core.certificates import ServedCertificate
from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.router.challenges import challenges_to_json
from dynos.router.metrics import AppMetrics
from dynos.router.proxy import BACKLOG, Router
from dynos.router.routing_table import Challenge
from dynos.router.tls import to_json

log = logging.getLogger(__name__)

STATS_EVERY = 0.5  # seconds between a process's metrics reports
LOG_EVERY = 0.05  # seconds between a process's batches of router lines
RESTART_DELAY = 1.0  # seconds before a router process that died is started again,
RESTART_DELAY_MAX = 30.0  # doubling up to this while it keeps dying
STABLE_AFTER = 60.0  # seconds a process must have lived for the delay to start over
LINE_LIMIT = 16 * 1024 * 1024  # one message (a routing table, a batch of log lines)
CHALLENGE_TIMEOUT = 5.0  # seconds to wait for the processes to take new ACME challenges


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port`` (port 0: a free one), one per process.

    ``host`` is bound at its first address (``localhost``: one of 127.0.0.1 and ::1; ``""``:
    every IPv4 address, as 0.0.0.0). Several
    sockets share the port through ``SO_REUSEPORT``, which would also let a second server
    started on the same port join in silently and take a share of the connections: so the
    port is first bound once without it, which fails (``EADDRINUSE``) if anything listens
    there already, as a single socket would.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    first = _listening(family, kind, proto, address, reuse_port=False)
    if count == 1:
        return [first]
    address = first.getsockname()  # the port picked for port 0
    first.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_listening(family, kind, proto, address, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listening(
    family: int, kind: int, proto: int, address: Any, *, reuse_port: bool
) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # "::" is IPv6 only, as asyncio and nginx bind it
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def emit_shipped(logs: LogHub, turns: list[list[str]]) -> None:
    """Emit the router lines of a ``{"logs": turns}`` message (worker.py's ForwardedLogs)."""
    for at_iso, *flat in turns:
        lines = list(zip(flat[::2], flat[1::2], strict=True))
        logs.emit_batch(PLATFORM, "router", datetime.fromisoformat(at_iso), lines)


class RouterProcesses:
    """The router processes beside the server's own router, which ``start`` starts; the
    followers of its routing table (``RouteFollowers``), made before the table is."""

    def __init__(self, logs: LogHub) -> None:
        self._logs = logs
        self._router: Router | None = None
        self._sockets: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._certificates: list[ServedCertificate] = []
        self._processes: dict[int, _Process] = {}
        self._drain_ids = itertools.count(1)
        self._routes_due = False
        self._routes_sent = b""
        self._closing = False
        self._serving: set[asyncio.Task[None]] = set()  # one per process, restarts included

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("the router processes are not started")
        return self._router

    async def start(
        self, router: Router, sockets: list[tuple[socket.socket, socket.socket]]
    ) -> None:
        """Start one process per pair in ``sockets`` (the listening sockets of
        ``listening_sockets`` other than ``router``'s: HTTP, then HTTPS), each holding as
        many connections as ``router`` does (its ``limits``: the server gives every process
        its share)."""
        self._router = router
        self._sockets = dict(enumerate(sockets, start=1))
        for number in self._sockets:
            await self._spawn(number, RESTART_DELAY)

    async def close(self) -> None:
        """Let every process finish its requests (the router's drain timeout) and exit."""
        self._closing = True
        processes = list(self._processes.values())
        for process in processes:
            process.send({"close": True})
        # The processes hold their own copies: a connection that arrives from now on is
        # refused at once rather than left waiting in a queue nobody accepts from.
        for pair in self._sockets.values():
            for sock in pair:
                sock.close()
        if self._router is None:
            return
        await asyncio.gather(*(p.stop(self._router.drain_timeout + 5) for p in processes))
        for task in self._serving:  # those waiting to start a process again
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        self._processes.clear()  # from here, routes and drains concern this process only
        self._router.metrics.elsewhere.clear()

    # ---- RouteFollowers: what the routing table tells ----------------------------------------

    def routes_changed(self) -> None:
        # The manager sets every app's route on each pass, changed or not: send the table
        # once per loop turn, and only when it differs from the one sent last.
        if not self._processes:
            return  # not started, or closed; a process that starts gets the whole table
        if not self._routes_due:
            self._routes_due = True
            asyncio.get_running_loop().call_soon(self._send_routes)

    def _send_routes(self) -> None:
        self._routes_due = False
        line = encode_message({"routes": self.router.table.snapshot()})
        if line != self._routes_sent:
            self._routes_sent = line
            for process in self._processes.values():
                process.send_line(line)

    def certificates_changed(self, certificates: list[ServedCertificate]) -> None:
        """The certificates to serve changed (platform/certificates.py): tell every process."""
        self._certificates = list(certificates)
        line = encode_message({"certificates": to_json(self._certificates)})
        for process in self._processes.values():
            process.send_line(line)

    async def drain(self, app: str, dyno: str, timeout: float) -> None:
        if not self._processes:
            return
        self._send_routes()  # the dyno's removal from its route goes first
        waits = []
        for process in self._processes.values():
            drain_id = next(self._drain_ids)
            waits.append(process.drain(drain_id, app, dyno, timeout))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)

    async def challenges_changed(self, challenges: dict[str, Challenge]) -> None:
        """``ChallengeFollowers``: every process answers ``challenges`` once this returns
        (an ACME server may look as soon as it is told to)."""
        if not self._processes:
            return
        data = challenges_to_json(challenges)
        waits = [
            process.acknowledged("challenges", next(self._drain_ids), data)
            for process in self._processes.values()
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHALLENGE_TIMEOUT):
                await asyncio.gather(*waits)

    # ---- the processes ---------------------------------------------------------------------

    async def _spawn(self, number: int, restart_delay: float) -> None:
        ours, theirs = socket.socketpair()
        listening, tls_listening = (sock.fileno() for sock in self._sockets[number])
        router = self.router
        limits = router.counts.limits
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dynos.router.worker",
                str(listening),
                str(tls_listening),
                str(theirs.fileno()),
                router.table.domain,
                str(limits.total),
                str(limits.per_client),
                pass_fds=(listening, tls_listening, theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=LINE_LIMIT)
        child = _Process(number, process, reader, writer, restart_delay)
        self._processes[number] = child
        # Certificates first: the process starts its TLS port once it has them.
        child.send({"certificates": to_json(self._certificates)})
        routes = encode_message({"routes": router.table.snapshot()})
        child.send_line(routes)
        if router.table.challenges:
            child.send({"challenges": [0, challenges_to_json(router.table.challenges)]})
        child.reading = asyncio.create_task(self._serve(child))
        self._serving.add(child.reading)
        child.reading.add_done_callback(self._serving.discard)

    async def _serve(self, child: _Process) -> None:
        """Take ``child``'s messages until it exits, then start it again (unless closing)."""
        await self._read(child)
        child.lost()
        self.router.metrics.retire(child.number)
        status = await child.process.wait()
        if self._closing:
            return
        self._processes.pop(child.number, None)
        # A process that keeps dying is started again less and less often.
        delay = child.restart_delay
        if time.monotonic() - child.started < STABLE_AFTER:
            delay = min(delay * 2, RESTART_DELAY_MAX)
        else:
            delay = RESTART_DELAY
        log.error(
            "router process %d exited (status %s): starting it again in %g s",
            child.number,
            status,
            delay,
        )
        while True:
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._spawn(child.number, delay)
                return
            except OSError as exc:
                delay = min(delay * 2, RESTART_DELAY_MAX)
                log.error(
                    "router process %d could not start (%s): trying again in %g s",
                    child.number,
                    exc,
                    delay,
                )

    async def _read(self, child: _Process) -> None:
        table = self.router.table
        metrics = self.router.metrics
        try:
            while line := await child.reader.readline():
                message = json.loads(line)
                if "logs" in message:
                    emit_shipped(self._logs, message["logs"])
                elif "stats" in message:
                    metrics.elsewhere[child.number] = {
                        app: AppMetrics.from_json(data) for app, data in message["stats"].items()
                    }
                    for app, at in message["last"].items():
                        table.note_request(app, at)
                elif "drained" in message:
                    child.drained(message["drained"])
                elif "challenged" in message:
                    child.drained(message["challenged"])
                elif "wake" in message:
                    table.wake(message["wake"])
        except (ConnectionError, ValueError) as exc:
            log.error("router process %d: %s", child.number, exc)


def encode_message(message: dict[str, Any]) -> bytes:
    """One message of the control protocol (above): a line of JSON."""
    return json.dumps(message).encode() + b"\n"


class _Process:
    def __init__(
        self,
        number: int,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        restart_delay: float,
    ) -> None:
        self.number = number
        self.process = process
        self.reader = reader
        self.writer = writer
        self.restart_delay = restart_delay  # how long it waited to be started
        self.started = time.monotonic()
        self.reading: asyncio.Task[None] | None = None
        self._drains: dict[int, asyncio.Future[None]] = {}
        self._lost = False

    def send(self, message: dict[str, Any]) -> None:
        self.send_line(encode_message(message))

    def send_line(self, line: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(line)

    async def drain(self, drain_id: int, app: str, dyno: str, timeout: float) -> None:
        await self.acknowledged("drain", drain_id, app, dyno, timeout)

    async def acknowledged(self, kind: str, drain_id: int, *args: Any) -> None:
        """Send ``{kind: [drain_id, *args]}``; return once the process answers that id."""
        if self._lost:  # nothing is in flight in a process that is gone
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drains[drain_id] = waiter
        self.send({kind: [drain_id, *args]})
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
        self._lost = True
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
