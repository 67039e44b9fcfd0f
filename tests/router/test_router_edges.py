"""The router end to end, at the edges: odd dynos, odd clients, timeouts, retries."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import AsyncIterator

import pytest

from dynos.router.upstream import UpstreamPool
from dynos.testing.fakes import FakeClock
from tests.router.router_harness import (
    APP,
    HOST,
    answer_without_dynos,
    client,
    fake_dynos,
    one_dyno,
    raw_exchange,
    running_router,
    table_with,
)

pytestmark = pytest.mark.anyio

H = HOST.encode()


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


# ---- dynos that misbehave ---------------------------------------------------------------


async def test_dyno_answering_with_garbage_gives_503_and_h17_line() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        async with client(r.port) as http:
            response = await http.get("/garbage")
        lines = r.router_lines(APP)
    assert response.status_code == 503
    assert re.fullmatch(
        r'at=error code=H17 desc="Poorly formatted HTTP response" method=GET '
        r'path="/garbage" .* dyno=web\.1 connect=\d+ms service=\d+ms status=503 bytes= '
        r"protocol=http",
        lines[0],
    )


async def test_dyno_cutting_its_response_short_cuts_the_client_and_logs_h18() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = b""
        with contextlib.suppress(ConnectionResetError):
            received = await raw_exchange(
                r.port, b"GET /truncated HTTP/1.1\r\nHost: %s\r\n\r\n" % H
            )
        lines = r.router_lines(APP)
    assert body_of(received) == b"only ten.."  # and then the connection ended
    assert lines[0].startswith('at=error code=H18 desc="Server Request Interrupted" ')
    assert " status=200 bytes=" in lines[0]


async def test_get_on_a_pooled_connection_the_dyno_just_closed_is_retried() -> None:
    async with one_dyno() as (dyno, _, http):
        first = await http.get("/close-if-reused")
        second = await http.get("/close-if-reused")  # the dyno drops the reused one
    assert (first.status_code, second.status_code) == (200, 200)
    assert dyno.connections == 2


async def test_post_on_a_pooled_connection_the_dyno_just_closed_is_not_retried() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        async with client(r.port) as http:
            await http.get("/close-if-reused")
            response = await http.post("/close-if-reused", content=b"order #1")
        lines = r.router_lines(APP)
    assert response.status_code == 503
    assert lines[1].startswith('at=error code=H13 desc="Connection closed without response" ')


async def test_idle_dyno_connection_is_closed_after_the_pool_idle_timeout() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table, pool=UpstreamPool(idle_timeout=0.05)) as r:
            async with client(r.port) as http:
                await http.get("/")
            assert await dyno.disconnects.get() == 1  # closed by the router's sweep


# ---- request and response framing --------------------------------------------------------


async def test_100_continue_from_the_dyno_reaches_the_client() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % H
        )
        interim = await reader.readuntil(b"\r\n\r\n")  # before any body is sent
        writer.write(b"hello")
        final = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"body": "hello"' in body_of(final)


async def test_chunked_body_sent_after_the_dyno_connection_is_up_is_forwarded() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" % H
        )
        await dyno.heads.get()  # the dyno has the head: the body goes straight through
        writer.write(b"5\r\nhello\r\n")
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert b'"body": "hello world"' in body_of(received)
    assert dyno.requests[0].chunked


async def test_sixteen_megabyte_chunked_upload_arrives_whole() -> None:
    pieces = [os.urandom(64 * 1024) for _ in range(256)]

    async def upload() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async with one_dyno() as (_, _, http):
        response = await http.post("/upload", content=upload())
    echoed = response.json()
    assert echoed["chunked"]
    assert echoed["body_size"] == 16 * 1024 * 1024
    assert echoed["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


async def test_malformed_chunked_body_gets_400() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port,
            b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" % H,
        )
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_upgrade_request_goes_to_the_dyno_as_a_plain_request() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port,
            b"GET /one HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            b"GET /two HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (H, H),
        )
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert [got.path for got in dyno.requests] == ["/one", "/two"]
    names = {name.lower() for name, _ in dyno.requests[0].headers}
    assert names.isdisjoint({"upgrade", "http2-settings", "connection"})


async def test_upgrade_request_with_a_body_gets_400() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port,
            b"POST / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Content-Length: 3\r\n\r\nabc" % H,
        )
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert dyno.requests == []


async def test_incoming_via_is_extended_not_replaced() -> None:
    async with one_dyno() as (dyno, _, http):
        await http.get("/", headers={"Via": "1.0 corp-proxy"})
    assert dyno.requests[0].header("Via") == "1.0 corp-proxy, 1.1 dynos"


# ---- clients that behave unusually --------------------------------------------------------


async def test_http10_request_without_host_gets_404() -> None:
    received = await answer_without_dynos(b"GET / HTTP/1.0\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 404 Not Found\r\n")


async def test_http10_client_asking_for_keep_alive_gets_it() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET /one HTTP/1.0\r\nHost: %s\r\nConnection: keep-alive\r\n\r\n" % H)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        writer.write(b"GET /two HTTP/1.0\r\nHost: %s\r\n\r\n" % H)  # no keep-alive this time
        second = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert b"\r\nConnection: keep-alive\r\n" in head
    assert b'"path": "/two"' in body_of(second)


async def test_idle_client_connection_is_closed_after_the_keepalive_timeout() -> None:
    clock = FakeClock()
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table, clock=clock) as r:  # keepalive_timeout 75
            reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % H)
            head = await reader.readuntil(b"\r\n\r\n")  # idle once the answer is out
            clock.advance(74)
            r.router.check_deadlines()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await reader.read(-1)  # still open at 74 s
            clock.advance(1.1)
            r.router.check_deadlines()
            received = head + await reader.read(-1)  # returns once the router closes
            writer.close()
            await writer.wait_closed()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" not in received  # it was kept alive, then timed out


async def test_request_with_two_host_headers_gets_400() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port, b"GET / HTTP/1.1\r\nHost: %s\r\nHost: other.localhost\r\n\r\n" % H
        )
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert dyno.requests == []


async def test_http11_request_without_host_gets_400() -> None:
    received = await answer_without_dynos(b"GET / HTTP/1.1\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_client_leaving_mid_request_is_logged_h27_and_the_dyno_connection_dropped() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        lines = r.logs.follow(APP, dyno="router")
        _, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: %s\r\n\r\n" % H)
        await dyno.arrived.get()
        writer.close()  # gone before the dyno answers
        await writer.wait_closed()
        line = (await anext(lines)).message
        lines.close()
        dyno.release.set()
        assert await dyno.disconnects.get() == 1  # the router did not keep it
        async with client(r.port) as http:
            response = await http.get("/")
    assert re.fullmatch(
        r'at=error code=H27 desc="Client Request Interrupted" method=GET path="/slow" .* '
        r"dyno=web\.1 connect=\d+ms service=\d+ms status=499 bytes= protocol=http",
        line,
    )
    assert response.status_code == 200


async def test_request_line_over_8k_gets_414() -> None:
    target = b"/" + b"a" * 8192
    received = await answer_without_dynos(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, H))
    assert received.startswith(b"HTTP/1.1 414 ")


async def test_header_line_over_8k_gets_431() -> None:
    cookie = b"c=" + b"x" * 8192
    request = b"GET / HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n" % (H, cookie)
    assert (await answer_without_dynos(request)).startswith(b"HTTP/1.1 431 ")


async def test_head_over_64k_in_many_headers_gets_431() -> None:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 1000) for n in range(70))
    request = b"GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (H, headers)
    assert (await answer_without_dynos(request)).startswith(b"HTTP/1.1 431 ")


async def test_header_that_never_ends_is_cut_off_with_431() -> None:
    async with running_router(table_with(APP, [])) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\nX-Endless: " % H)
        for _ in range(32):  # 2 MiB, past the limit; the router keeps reading, dropping
            writer.write(b"z" * 65536)
            await writer.drain()
        writer.write_eof()
        received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert received.startswith(b"HTTP/1.1 431 ")
