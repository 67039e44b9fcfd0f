"""Bad client input: smuggling vectors are refused, fuzzed requests never crash the router."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynos.logs.hub import LogHub
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable
from tests.router.router_harness import (
    APP,
    HOST,
    answer_without_dynos,
    fake_dynos,
    raw_exchange,
    running_router,
    table_with,
)

pytestmark = pytest.mark.anyio

H = HOST.encode()

# Each of these could be read two ways by two HTTP implementations (the router and the dyno,
# or a proxy in front): refused with 400, and the connection closed.
SMUGGLING = {
    "content-length and transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
    ),
    "transfer-encoding and content-length": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 6\r\n\r\n0\r\n\r\nG"
    ),
    "two content-lengths": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
    ),
    "the same content-length twice": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "a content-length list": b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 3, 3\r\n\r\nabc",
    "chunked, identity": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
    ),
    "xchunked": b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "gzip, chunked": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding twice": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "space before the colon": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "obs-fold": b"GET / HTTP/1.1\r\nHost: %s\r\nX-Folded: a\r\n b\r\n\r\n",
    "obs-fold of transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"
    ),
    "bare LF after the request line": b"GET / HTTP/1.1\nHost: %s\r\n\r\n",
    "bare LF after a header": b"GET / HTTP/1.1\r\nHost: %s\nX-A: b\r\n\r\n",
    "bare LF ending the head": b"GET / HTTP/1.1\r\nHost: %s\r\n\n",
    "bare CR": b"GET / HTTP/1.1\r\nHost: %s\rX-A: b\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk longer than its size": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"
    ),
    "chunk size with a bare LF": (
        b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"
    ),
    "HTTP/2.0 in the request line": b"GET / HTTP/2.0\r\nHost: %s\r\n\r\n",
    "HTTP/0.9 style request line": b"GET /%s\r\n\r\n",
    "absolute-form target": b"GET http://other.localhost/ HTTP/1.1\r\nHost: %s\r\n\r\n",
    "NUL in a header value": b"GET / HTTP/1.1\r\nHost: %s\r\nX-A: a\x00b\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_vector_is_refused_with_400_and_close(request_bytes: bytes) -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(r.port, request_bytes % H)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close\r\n" in received
    assert received.count(b"HTTP/1.1 ") == 1
    assert dyno.requests == []


async def test_a_plain_chunked_request_is_accepted() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port,
            b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: Chunked\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n" % H,
        )
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert dyno.requests[0].body == b"abc"


async def test_more_than_1000_headers_get_431() -> None:
    headers = b"".join(b"X-%d: y\r\n" % n for n in range(1001))
    request = b"GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (H, headers)
    assert (await answer_without_dynos(request)).startswith(b"HTTP/1.1 431 ")


async def test_a_request_line_just_under_8k_is_accepted() -> None:
    target = b"/" + b"a" * 8000
    request = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, H)
    received = await answer_without_dynos(request)
    assert received.startswith(b"HTTP/1.1 503 ")  # routed: the app has no dyno


# ---- answered at once: no traceback ----------------------------------------------------------

# Requests the router answers itself, before any dyno, and then closes the connection (issue
# 11: compiled, each of these raised TypeError in the router and logged a traceback).
ANSWERED_AT_ONCE = {
    "HTTP/1.0 without Host": (b"GET / HTTP/1.0\r\n\r\n", b"404"),
    "Connection: close to an unknown app": (
        b"GET / HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n",
        b"404",
    ),
    "a body to an unknown app": (
        b"POST / HTTP/1.1\r\nHost: nope.localhost\r\nContent-Length: 3\r\n\r\nabc",
        b"404",
    ),
    "Connection: close to an app without dynos (H14)": (
        b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % H,
        b"503",
    ),
    "HTTP/1.0 to an app without dynos (H14)": (
        b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % H,
        b"503",
    ),
    "a body to an app without dynos (H14)": (
        b"PUT / HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\n\r\nabc" % H,
        b"503",
    ),
    "a WebSocket upgrade to an unknown app, closing": (
        b"GET /ws HTTP/1.1\r\nHost: nope.localhost\r\nConnection: Upgrade, close\r\n"
        b"Upgrade: websocket\r\n\r\n",
        b"404",
    ),
    "pipelined, the second closing": (
        b"GET / HTTP/1.1\r\nHost: nope.localhost\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        b"404",
    ),
}


@pytest.mark.parametrize(
    ("request_bytes", "status"), ANSWERED_AT_ONCE.values(), ids=ANSWERED_AT_ONCE.keys()
)
async def test_an_answer_given_at_once_then_closed_logs_no_error(
    caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: bytes
) -> None:
    with caplog.at_level(logging.WARNING, logger="dynos.router"):
        received = await answer_without_dynos(request_bytes)
    assert received.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"Connection: close\r\n" in received.rsplit(b"HTTP/1.1 ", 1)[1]
    assert [r.getMessage() for r in caplog.records] == []


# ---- HTTP/0.9 ---------------------------------------------------------------------------------


async def answer_within(pieces: list[bytes], seconds: float) -> bytes:
    """What the router answers to ``pieces`` (sent one by one), with a header timeout far
    longer than ``seconds``: an answer that waited for it fails the test."""
    received: list[bytes] = []

    async with running_router(table_with(APP, []), header_timeout=60) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        async with asyncio.timeout(seconds):
            received.append(await reader.read(-1))
        writer.close()
        await writer.wait_closed()

    return received[0]


@pytest.mark.parametrize(
    "pieces",
    [
        [b"GET /\r\n"],
        [b"GET /index.html\r\n"],
        [b"GET /", b"\r\n"],
        [b"GET /\r", b"\n"],
        [b"\r\nGET /\r\n"],
        [b"GET / HTTP/1.1\r\nHost: nope.localhost\r\n\r\n", b"GET /\r\n"],
        [b"GET / HTTP/1.1\r\nHost: nope.localhost\r\n\r\nGET /\r\nX"],
    ],
    ids=["line", "a path", "split", "split CR LF", "after CRLF", "after a request", "pipelined"],
)
async def test_an_http09_request_line_gets_400_at_once(pieces: list[bytes]) -> None:
    received = await answer_within(pieces, 2.0)
    assert received.endswith(b"</html>\n")
    assert re.findall(rb"HTTP/1\.1 (\d+) ", received)[-1] == b"400"


async def test_a_head_sent_slowly_is_not_taken_for_http09() -> None:
    head = b"GET / HTTP/1.1\r\nReferer: GET /\r\nHost: %s\r\nConnection: close\r\n\r\n" % H
    pieces = [head[:6], head[6:16], head[16:34], head[34:50], head[50:]]
    received = await answer_within(pieces, 2.0)
    assert received.startswith(b"HTTP/1.1 503 ")  # routed: the app has no dyno


# ---- fuzzing ------------------------------------------------------------------------------

ALLOWED = {b"400", b"404", b"414", b"431", b"503"}
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b"\x00",
    b"\xff",
    b"0",
    b"-1",
    b"chunked",
    b"Content-Length: ",
    b"Transfer-Encoding: ",
    b"Host: ",
    b"\r\n\r\n",
    b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
    b"Expect: 100-continue\r\n",
    b"GET / HTTP/1.1\r\n",
    b"ffffffffffffffffff\r\n",
]
VALID = (
    b"POST /path?q=1 HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\n"
    b"X-Request-Id: abc\r\n\r\nhello"
    b"GET / HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n"
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        token = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=4))
        if draw(st.booleans()):
            data[at:at] = token  # insert
        else:
            data[at : at + len(token)] = token  # overwrite
    return bytes(data)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"get", b""]))
    target = draw(st.binary(max_size=40) | st.sampled_from([b"/", b"*", b"/a b"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b""]))
    header = st.tuples(
        st.binary(max_size=20) | st.sampled_from([b"Host", b"Content-Length", b"TE"]),
        st.binary(max_size=30) | st.sampled_from([b"foo.localhost", b"chunked", b"3"]),
    )
    headers = draw(st.lists(header, max_size=8))
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + draw(st.binary(max_size=40))


class ThreadedRouter:
    """A router on its own uvloop thread, kept across fuzzing examples."""

    def __init__(self) -> None:
        self.port = 0
        self.errors: list[dict[str, Any]] = []
        self._loop = uvloop.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        self._loop.set_exception_handler(lambda _, ctx: self.errors.append(ctx))
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        table = RoutingTable("localhost")
        table.set_app(APP, [])
        router = Router(table, LogHub(), header_timeout=2, tick=0.05)
        self.port = await router.start("127.0.0.1", 0)
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await router.close()

    def close(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self._loop.close()

    def exchange(self, data: bytes) -> bytes:
        """Send ``data``, end the sending side, return what comes back until the close."""
        received = bytearray()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        return bytes(received)


@pytest.fixture(scope="module")
def fuzz_router() -> Iterator[ThreadedRouter]:
    router = ThreadedRouter()
    yield router
    router.close()
    assert router.errors == []


def check_answer(received: bytes) -> None:
    statuses = re.findall(rb"(?:^|\r\n\r\n|\n)HTTP/1\.1 (\d{3}) ", received)
    if received:
        assert received.startswith(b"HTTP/1.1 "), received[:100]
    assert set(statuses) <= ALLOWED, received[:300]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_random_bytes_get_400_or_nothing(fuzz_router: ThreadedRouter, data: bytes) -> None:
    check_answer(fuzz_router.exchange(data))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_requests_never_crash_the_router(fuzz_router: ThreadedRouter, data: bytes) -> None:
    check_answer(fuzz_router.exchange(data))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=structured())
def test_odd_request_heads_never_crash_the_router(fuzz_router: ThreadedRouter, data: bytes) -> None:
    check_answer(fuzz_router.exchange(data))


def test_the_router_still_answers_after_the_fuzzing(fuzz_router: ThreadedRouter) -> None:
    received = fuzz_router.exchange(b"GET / HTTP/1.1\r\nHost: foo.localhost\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 503 ")
    assert fuzz_router.errors == []
