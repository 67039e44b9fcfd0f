"""Request smuggling: the requests a dyno reads are exactly the requests the router logged.

The dyno here parses with h11, not with the router's httptools, on a real socket, and records
every request it reads. Any byte the router forwards that the dyno can read as a request the
router did not see (a body sent without its length, a second request in a body) shows up as
a request in the dyno's record that has no line in the router's log, or a line whose request
the dyno read differently. The property test draws header sets and orders, with every header
name the router treats specially (framing, routing, its own, hop-by-hop) named in
``Connection``; the tests before it pin the cases of issue 11 one by one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime

import h11
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynos.logs.hub import LogHub
from dynos.router.forwarding import ROUTER_REQUEST_HEADERS, UNREMOVABLE_REQUEST
from dynos.router.http import HOP_BY_HOP
from dynos.router.proxy import Router
from dynos.router.route import DynoEndpoint
from dynos.router.routing_table import RoutingTable
from tests.router.router_harness import APP, DOMAIN, HOST

pytestmark = pytest.mark.anyio

H = HOST.encode()

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
# Every name the router reads or writes itself, and some it only copies.
CONNECTION_NAMES = sorted(
    {n.decode() for n in UNREMOVABLE_REQUEST | ROUTER_REQUEST_HEADERS | HOP_BY_HOP}
    | {"close", "keep-alive", "cookie", "content-type", "expect", "x-private", "upgrade"}
)


@dataclass
class Seen:
    """A request as the dyno read it."""

    method: str
    target: str
    request_ids: list[str]
    body: bytes = b""


@dataclass
class H11Dyno:
    """A dyno that reads requests with h11 and answers each with 200 ``ok``."""

    seen: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    serving: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        task.add_done_callback(self.serving.discard)
        conn = h11.Connection(h11.SERVER)
        current: Seen | None = None
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    ids = [v.decode() for k, v in event.headers if k == b"x-request-id"]
                    current = Seen(event.method.decode(), event.target.decode(), ids)
                    self.seen.append(current)  # at its head: a request read is a request
                elif isinstance(event, h11.Data):
                    assert current is not None
                    current.body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert current is not None
                    head = current.method == "HEAD"
                    writer.write(
                        conn.send(h11.Response(status_code=200, headers=[("Content-Length", "2")]))
                        or b""
                    )
                    if not head:
                        writer.write(conn.send(h11.Data(data=b"ok")) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                else:  # ConnectionClosed
                    return
        except h11.RemoteProtocolError as exc:
            self.errors.append(f"the dyno could not read what the router sent: {exc}")
        except ConnectionError:
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


class RecordingHub(LogHub):
    """A log hub that also keeps every router line, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.router_lines: list[str] = []

    def emit_batch(
        self, source: str, dyno: str, at: datetime, lines: list[tuple[str, str]]
    ) -> None:
        self.router_lines.extend(message for _, message in lines)
        super().emit_batch(source, dyno, at, lines)


LINE = re.compile(r'method=(\S+) path="([^"]*)" host=\S* request_id=(\S+) .* status=(\d+)')


@dataclass
class Logged:
    method: str
    target: str
    request_id: str
    status: int


class Scene:
    """One router and one h11 dyno on a uvloop kept across examples (one server, reused)."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.errors: list[dict[str, object]] = []
        self.loop.set_exception_handler(lambda _, ctx: self.errors.append(ctx))
        self.dyno = H11Dyno()
        self.hub = RecordingHub()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.dyno_server = await asyncio.start_server(self.dyno.serve, "127.0.0.1", 0)
        port = self.dyno_server.sockets[0].getsockname()[1]
        table = RoutingTable(DOMAIN)
        table.set_app(APP, [DynoEndpoint("web.1", "127.0.0.1", port)])
        self.router = Router(table, self.hub, header_timeout=2.0, tick=0.05)
        self.port = await self.router.start("127.0.0.1", 0)

    def close(self) -> None:
        async def stop() -> None:
            await self.router.close()  # closes its dyno connections: the dyno's reads end
            self.dyno_server.close()
            await asyncio.gather(*self.dyno.serving)
            await self.dyno_server.wait_closed()

        self.loop.run_until_complete(stop())
        self.loop.close()

    def exchange(self, data: bytes) -> tuple[bytes, list[Logged], list[Seen]]:
        """Send ``data`` on a new connection; what came back until the router closed it,
        and the requests the router logged and the dyno read meanwhile."""
        logged_from, seen_from = len(self.hub.router_lines), len(self.dyno.seen)
        received = self.loop.run_until_complete(self._exchange(data))
        self.router.flush_logs()
        logged = []
        for line in self.hub.router_lines[logged_from:]:
            match = LINE.search(line)
            assert match, line
            method, target, request_id, status = match.groups()
            logged.append(Logged(method, target, request_id, int(status)))
        return received, logged, self.dyno.seen[seen_from:]

    async def _exchange(self, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            async with asyncio.timeout(5):
                received = await reader.read(-1)
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
        # Let the dyno read whatever else reached it (it runs on this loop).
        for _ in range(5):
            await asyncio.sleep(0.001)
        return received


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    running = Scene()
    yield running
    running.close()
    assert running.errors == []
    assert running.dyno.errors == []


def assert_dyno_read_what_the_router_logged(logged: list[Logged], seen: list[Seen]) -> None:
    assert [s.request_ids for s in seen] == [[entry.request_id] for entry in logged], (
        "the dyno read requests the router did not log (or the other way round):\n"
        f"router: {logged}\ndyno: {seen}"
    )
    assert [(s.method, s.target) for s in seen] == [(e.method, e.target) for e in logged]


def closing_request() -> bytes:
    return b"GET /last HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST.encode()


# ---- the cases of issue 11 ------------------------------------------------------------------


def test_content_length_named_in_connection_does_not_smuggle_the_body(scene: Scene) -> None:
    # Issue 11's reproduction: the router dropped Content-Length and still sent the body.
    request = (
        b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: content-length\r\n"
        b"\r\n%s" % (HOST.encode(), len(SMUGGLED), SMUGGLED)
    )
    received, logged, seen = scene.exchange(request + closing_request())
    assert received.count(b"HTTP/1.1 200 ") == 2
    assert [(s.method, s.target, s.body) for s in seen] == [
        ("POST", "/", SMUGGLED),
        ("GET", "/last", b""),
    ]
    assert_dyno_read_what_the_router_logged(logged, seen)


@pytest.mark.parametrize("name", CONNECTION_NAMES)
def test_no_name_in_connection_lets_a_body_become_a_request(scene: Scene, name: str) -> None:
    for framing in (b"Content-Length: %d\r\n" % len(SMUGGLED), b"Transfer-Encoding: chunked\r\n"):
        body = (
            SMUGGLED
            if b"Length" in framing
            else b"%x\r\n%s\r\n0\r\n\r\n"
            % (
                len(SMUGGLED),
                SMUGGLED,
            )
        )
        request = (
            b"POST /one HTTP/1.1\r\nHost: %s\r\n%sX-Request-Id: %s\r\nVia: 1.0 cdn\r\n"
            b"X-Forwarded-For: 203.0.113.9\r\nConnection: %s\r\n\r\n%s"
            % (HOST.encode(), framing, b"c" * 24, name.encode(), body)
        )
        received, logged, seen = scene.exchange(request + closing_request())
        assert_dyno_read_what_the_router_logged(logged, seen)
        # (Connection: close ends the connection after the first request, as it should)
        expected = [("/one", SMUGGLED)] + ([] if name == "close" else [("/last", b"")])
        assert [(s.target, s.body) for s in seen] == expected
        assert received.count(b"HTTP/1.1 200 ") == len(expected)


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: +5\r\n",
        b"Content-Length: 5, 5\r\n",
        b"Content-Length: 0x5\r\n",
        b"Content-Length: \r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: chunked, gzip\r\n",
        b"Transfer-Encoding: identity\r\n",
        b"Transfer-Encoding:\r\n chunked\r\n",
        b"X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
    ],
)
def test_ambiguous_framing_gets_400_and_reaches_no_dyno(scene: Scene, framing: bytes) -> None:
    request = b"POST / HTTP/1.1\r\nHost: %s\r\n%s\r\nhello" % (HOST.encode(), framing)
    received, logged, seen = scene.exchange(request + SMUGGLED)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert received.count(b"HTTP/1.1 ") == 1
    assert logged == [] and seen == []


# ---- the property: over header sets and orders -----------------------------------------------

# Framings: one the router accepts, or one it must refuse (ambiguous, or not a number).
GOOD_LENGTHS = ["{n}", "0{n}", " {n}", "{n} "]
ODD_LENGTHS = [*GOOD_LENGTHS, "+{n}", "{n},{n}", "{n}, {n}", "-{n}", "", "0x{n}"]
GOOD_CODINGS = ["chunked", "Chunked", " chunked"]
ODD_CODINGS = [*GOOD_CODINGS, "gzip, chunked", "chunked, gzip", "identity", "chunked, chunked"]
HOSTS = [[HOST]] * 16 + [[], ["other.localhost"], [HOST, HOST], [HOST, "other.localhost"]]
OTHER_HEADERS = [
    ("X-Request-Id", "r" * 24),
    ("X-Request-Id", "short"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "443"),
    ("X-Request-Start", "1"),
    ("X_Forwarded_Proto", "https"),
    ("Forwarded", "for=6.6.6.6"),
    ("Via", "1.1 cdn"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-T"),
    ("Proxy-Connection", "keep-alive"),
    ("Upgrade", "h2c"),
    ("Upgrade", "websocket"),
    ("Expect", "100-continue"),
    ("Cookie", "session=1"),
    ("Content-Type", "text/plain"),
    ("X-Private", "1"),
]


@st.composite
def header_token(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(CONNECTION_NAMES))
    return name.upper() if draw(st.booleans()) else name


@st.composite
def one_request(draw: st.DrawFn, number: int) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
    body = draw(st.sampled_from([b"", SMUGGLED, b"plain body", SMUGGLED + SMUGGLED]))
    headers = [("Host", host) for host in draw(st.sampled_from(HOSTS))]
    framing = draw(st.sampled_from(["none", "length", "chunked", "odd"]))
    lengths: list[str] = []
    codings: list[str] = []
    if framing == "length":
        lengths = [draw(st.sampled_from(GOOD_LENGTHS))]
    elif framing == "chunked":
        codings = [draw(st.sampled_from(GOOD_CODINGS))]
    elif framing == "odd":
        lengths = draw(st.lists(st.sampled_from(ODD_LENGTHS), max_size=2))
        codings = draw(st.lists(st.sampled_from(ODD_CODINGS), max_size=2))
    headers += [("Content-Length", s.format(n=len(body))) for s in lengths]
    headers += [("Transfer-Encoding", c) for c in codings]
    headers += draw(st.lists(st.sampled_from(OTHER_HEADERS), max_size=4))
    for _ in range(draw(st.integers(0, 2))):
        tokens = draw(st.lists(header_token(), min_size=1, max_size=5))
        headers.append(("Connection", ", ".join(tokens)))
    headers = draw(st.permutations(headers))
    head = f"{method} /r{number} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    if codings:
        framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        framed = body
    return head.encode() + b"\r\n" + framed


@st.composite
def connection_input(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(1, 3))
    return b"".join(draw(one_request(n)) for n in range(count)) + closing_request()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=connection_input())
def test_the_dyno_reads_exactly_the_requests_the_router_logged(scene: Scene, data: bytes) -> None:
    received, logged, seen = scene.exchange(data)
    assert_dyno_read_what_the_router_logged(logged, seen)
    # What the router answered came from those requests (a 200 each) or from itself (400s).
    assert len(re.findall(rb"HTTP/1\.1 200 ", received)) == len(logged)
    assert all(entry.status == 200 for entry in logged)


def test_requests_after_an_h2c_upgrade_the_router_does_not_tunnel_reach_the_dyno(
    scene: Scene,
) -> None:
    """Found by the property above: an upgrade to h2c (not tunnelled: sent on as a plain
    request) followed by more requests on the connection. The next request was read inside
    the handler of the first one's upgrade, so Python made that upgrade the context of the
    next request's parse error, and the router took it for a bug of its own (a 503)."""
    data = (
        b"GET /r0 HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: rrrrrrrrrrrrrrrrrrrrrrrr\r\n"
        b"X-Request-Id: rrrrrrrrrrrrrrrrrrrrrrrr\r\nUpgrade: h2c\r\n"
        b"Connection: connection\r\nConnection: upgrade\r\n\r\n"
        b"GET /r1 HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 0\r\nUpgrade: h2c\r\n"
        b"Connection: upgrade\r\n\r\n" + closing_request()
    )
    received, logged, seen = scene.exchange(data)
    assert_dyno_read_what_the_router_logged(logged, seen)
    assert all(entry.status == 200 for entry in logged)
    assert len(re.findall(rb"HTTP/1\.1 200 ", received)) == len(logged)


# ---- the dyno side: a response nobody asked for ---------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.05], ids=["same-read", "on-the-idle-connection"])
async def test_a_response_nobody_asked_for_is_never_handed_to_a_client(delay: float) -> None:
    """A dyno answers twice: the second answer (in the same read as the first, or on the
    pooled connection later) closes that connection, and the next request gets its own
    response on a new one."""
    await _stray_response_scenario(delay)


async def _stray_response_scenario(delay: float) -> None:
    connections = 0
    stray_sent = asyncio.Event()

    handlers: list[asyncio.Task[None]] = []

    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        number = connections
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            path = head.split(b" ")[1]
            body = b"answer %d for %s" % (number, path)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            if path == b"/first":
                if delay:
                    await writer.drain()
                    await asyncio.sleep(delay)  # the router has pooled the connection by now
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
                await writer.drain()
                stray_sent.set()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(twice, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    table = RoutingTable(DOMAIN)
    table.set_app(APP, [DynoEndpoint("web.1", "127.0.0.1", port)])
    router = Router(table, LogHub(), tick=0.01)
    router_port = await router.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", router_port)
        writer.write(b"GET /first HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
        await stray_sent.wait()
        await asyncio.sleep(0.05)  # the router has read the stray bytes
        writer.write(b"GET /second HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % H)
        received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    finally:
        await router.close()  # the dyno connections close: their handlers end
        server.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()
    assert b"stray" not in received
    assert b"answer 1 for /first" in received
    assert b"answer 2 for /second" in received  # on a new connection: the first was closed
