"""Test doubles for the router: a fake dyno speaking HTTP/1.1 and a wire-level client.

The fake dyno (asyncio streams, its own small parser) records each request it receives and
answers according to the path:

- ``/chunked``: a chunked response; ``/until-close``: a body ended by closing the connection;
- ``/drop``: close without answering; ``/big/<n>``: ``n`` bytes with Content-Length;
- ``/garbage``: not HTTP; ``/truncated``: 10 of the 100 bytes announced, then close;
- ``/close-if-reused``: answer on a new connection, close without answering on a used one;
- a request with ``Expect: 100-continue`` gets ``100 Continue`` before its body is read;
- ``/ws``: with ``Upgrade: websocket``, ``101 Switching Protocols``, then every read is echoed
  back as ``echo:<bytes>`` until the client closes; ``/ws-refused``: an ordinary answer;
- a dyno made with ``drops=True`` reads each request and closes without answering (a dyno
  dying under it);
- ``/slow``: wait for ``dyno.release`` before answering; ``/stream``: send a first chunk,
  wait for ``dyno.release``, send the rest; ``/first-bytes/<n>``: answer with the first ``n``
  body bytes without reading the rest; ``/then-close``: answer, then close (no warning);
- anything else: JSON describing the request (method, path, headers, body size and digest).

The wire client is h11 over asyncio streams, so framing (chunked, HEAD, keep-alive) is checked
by an independent HTTP implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx

from dynos.logs.hub import LogHub
from dynos.router.proxy import Router
from dynos.router.route import DynoEndpoint
from dynos.router.routing_table import RoutingTable

DOMAIN = "localhost"
APP = "foo"
HOST = "foo.localhost"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"
PATTERN = bytes(range(256)) * 256  # 64 KiB of varied bytes


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool
    connection: int  # which connection to the dyno carried it (1, 2, ...)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class FakeDyno:
    name: str
    drops: bool = False
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)  # whole requests
    heads: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # paths, before the body
    disconnects: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # connection numbers
    _open: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def endpoint(self) -> DynoEndpoint:
        return DynoEndpoint(self.name, "127.0.0.1", self.port)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        served = 0
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = writer
        try:
            while await self._answer_one(reader, writer, number, served):
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            del self._open[task]
            self.disconnects.put_nowait(number)

    async def stop(self) -> None:
        """Close the connections still open and wait for their handlers to end."""
        for writer in self._open.values():
            writer.transport.abort()
        await asyncio.gather(*self._open)

    async def _answer_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int, served: int
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ")
        headers = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
        pairs = [(k, v) for k, v in headers]
        lower = {k.lower(): v for k, v in pairs}
        chunked = lower.get("transfer-encoding", "").lower() == "chunked"
        self.heads.put_nowait(path)
        if path == "/ws" and lower.get("upgrade", "").lower() == "websocket":
            self.requests.append(Received(method, path, pairs, b"", False, number))
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: fake\r\n\r\n"
            )
            while data := await reader.read(65536):
                writer.write(b"echo:" + data)
                await writer.drain()
            return False
        if path == "/close-if-reused" and served:
            return False  # as a server that had just timed the idle connection out
        if lower.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if path.startswith("/first-bytes/"):
            # Answer with the start of the body as soon as it is here: proves streaming.
            start = await reader.readexactly(int(path.removeprefix("/first-bytes/")))
            self.requests.append(Received(method, path, pairs, start, chunked, number))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(start), start))
            await writer.drain()
            return False
        if chunked:
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(lower.get("content-length", "0")))
        got = Received(method, path, pairs, body, chunked, number)
        self.requests.append(got)
        self.arrived.put_nowait(got)

        if path == "/drop" or self.drops:
            return False
        if path == "/slow":
            await self.release.wait()
        if path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"hello ", b"chunked ", b"world"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if path == "/stream":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await self.release.wait()
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            await writer.drain()
            return True
        if path == "/garbage":
            writer.write(b"THIS IS NOT HTTP\r\n\r\n")
            await writer.drain()
            return False
        if path == "/truncated":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
            await writer.drain()
            return False
        if path == "/then-close":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            return False  # as a server whose keep-alive timeout just ran out
        if path == "/until-close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
            await writer.drain()
            return False
        if path.startswith("/big/"):
            size = int(path.removeprefix("/big/"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            if method != "HEAD":
                for start in range(0, size, len(PATTERN)):
                    writer.write(PATTERN[: min(len(PATTERN), size - start)])
                    await writer.drain()
            return True
        payload = json.dumps(
            {
                "dyno": self.name,
                "method": method,
                "path": path,
                "headers": pairs,
                "body_size": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "chunked": chunked,
                "body": body.decode("latin-1") if len(body) <= 1024 else None,
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Connection: keep-alive\r\nX-Dyno: %s\r\nContent-Length: %d\r\n\r\n"
            % (self.name.encode(), len(payload))
        )
        if method != "HEAD":
            writer.write(payload)
        await writer.drain()
        return lower.get("connection", "").lower() != "close"


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then blank line
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


@asynccontextmanager
async def fake_dynos(*names: str, drops: bool = False) -> AsyncIterator[list[FakeDyno]]:
    dynos = [FakeDyno(name, drops) for name in names]
    servers = []
    for dyno in dynos:
        server = await asyncio.start_server(dyno.serve, "127.0.0.1", 0)
        dyno.port = server.sockets[0].getsockname()[1]
        servers.append(server)
    try:
        yield dynos
    finally:
        for server in servers:
            server.close()
        for dyno in dynos:
            dyno.release.set()
            await dyno.stop()
        for server in servers:
            await server.wait_closed()


@dataclass
class Running:
    router: Router
    table: RoutingTable
    logs: LogHub
    port: int

    def router_lines(self, app: str) -> list[str]:
        self.router.flush_logs()
        return [line.message for line in self.logs.recent(app, 50, dyno="router")]


@asynccontextmanager
async def running_router(table: RoutingTable, **options: Any) -> AsyncIterator[Running]:
    """A router on a port-0 socket; its deadlines are checked every 10 ms unless ``tick``."""
    logs = LogHub()
    options.setdefault("tick", 0.01)
    router = Router(table, logs, **options)
    port = await router.start("127.0.0.1", 0)
    try:
        yield Running(router, table, logs, port)
    finally:
        await router.close()


@asynccontextmanager
async def one_dyno(
    **options: Any,
) -> AsyncIterator[tuple[FakeDyno, Running, httpx.AsyncClient]]:
    """The usual scene: ``APP`` with one fake dyno (web.1), its router, a client for it."""
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint]), **options) as r,
        client(r.port) as http,
    ):
        yield dyno, r, http


async def answer_without_dynos(request: bytes) -> bytes:
    """Everything a router sends back to the raw ``request`` (for ``APP``, which has no dyno:
    for input refused before any routing, and the 503 of one that gets through)."""
    received: list[bytes] = []

    async with running_router(table_with(APP, [])) as r:
        received.append(await raw_exchange(r.port, request))

    return received[0]


async def first_arrival(dynos: list[FakeDyno]) -> FakeDyno:
    """The dyno that receives the next whole request."""
    waits = {asyncio.create_task(d.arrived.get()): d for d in dynos}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return waits[done.pop()]


def table_with(
    app: str,
    endpoints: list[DynoEndpoint],
    *,
    crashed: bool = False,
    idle: bool = False,
    on_wake: Callable[[str], None] | None = None,
) -> RoutingTable:
    table = RoutingTable(DOMAIN, on_wake=on_wake)
    table.set_app(app, endpoints, crashed=crashed, idle=idle)
    return table


def closed_port() -> int:
    """A port nothing listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def dead_endpoint(dyno: str) -> DynoEndpoint:
    return DynoEndpoint(dyno, "127.0.0.1", closed_port())


def client(port: int) -> httpx.AsyncClient:
    """An httpx client sending requests to the router for ``HOST``."""
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Host": HOST})


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, return everything the router sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


@dataclass
class WireResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


class WireClient:
    """One HTTP/1.1 client connection, spoken with h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = h11.Connection(h11.CLIENT)

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int, source: str | None = None) -> AsyncIterator[WireClient]:
        """A connection to the router, from the address ``source`` if given (127.0.0.2 ...:
        another client)."""
        local = (source, 0) if source is not None else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
        try:
            yield cls(reader, writer)
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: list[bytes] | None = None,
    ) -> WireResponse:
        """Send one request (``body`` pieces are sent as they come) and read its response."""
        conn = self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        self._send(h11.Request(method=method, target=target, headers=headers))
        for piece in body or []:
            self._send(h11.Data(data=piece))
            await self._writer.drain()
        self._send(h11.EndOfMessage())
        await self._writer.drain()

        status = 0
        response_headers: dict[str, str] = {}
        content = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self._reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                return WireResponse(status, response_headers, bytes(content))
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the router closed the connection mid-response")

    def _send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            self._writer.write(data)

    @property
    def closed_by_server(self) -> bool:
        return self._conn.their_state is h11.MUST_CLOSE or self._conn.their_state is h11.CLOSED
