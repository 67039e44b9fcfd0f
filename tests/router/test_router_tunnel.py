"""Protocol upgrades (WebSocket): a 101 from the dyno turns the connection into a tunnel."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.router.router_harness import APP, HOST, fake_dynos, running_router, table_with

pytestmark = pytest.mark.anyio

H = HOST.encode()
UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def read_until(reader: asyncio.StreamReader, end: bytes) -> bytes:
    async with asyncio.timeout(3):
        return await reader.readuntil(end)


async def test_websocket_upgrade_is_tunnelled_both_ways() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(UPGRADE % (b"/ws", H) + b"early")  # bytes right after the head
        head = await read_until(reader, b"\r\n\r\n")
        first = await read_until(reader, b"early")
        writer.write(b"second")
        second = await read_until(reader, b"second")
        in_flight = r.table.in_flight(APP, "web.1")
        lines = r.router_lines(APP)
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(3):
            await dyno.disconnects.get()  # the tunnel's dyno side closes too
        while r.table.in_flight(APP, "web.1"):
            await asyncio.sleep(0.01)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in head
    assert b"\r\nConnection: Upgrade\r\n" in head
    assert first == b"echo:early"
    assert second == b"echo:second"
    assert in_flight == 1  # a tunnel counts as in flight (draining waits for it)
    got = dyno.requests[0]
    assert got.header("Upgrade") == "websocket"
    assert got.header("Connection") == "Upgrade"
    assert got.header("Sec-WebSocket-Key") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert re.fullmatch(
        r'at=info method=GET path="/ws" .* dyno=web\.1 connect=\d+ms service=\d+ms '
        r"status=101 bytes=\d+ protocol=http",
        lines[0],
    )


async def test_dyno_closing_the_tunnel_closes_the_client_connection() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(UPGRADE % (b"/ws", H))
        await read_until(reader, b"\r\n\r\n")
        await dyno.stop()  # the dyno side goes away
        async with asyncio.timeout(3):
            assert await reader.read(-1) == b""
        writer.close()
        await writer.wait_closed()


async def test_refused_upgrade_is_an_ordinary_response_and_the_connection_goes_on() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(
            UPGRADE % (b"/ws-refused", H)
            + b"GET /next HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % H
        )
        async with asyncio.timeout(3):
            received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert [got.path for got in dyno.requests] == ["/ws-refused", "/next"]


async def test_h2c_upgrade_is_not_tunnelled() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Connection: close\r\n\r\n" % H
        )
        async with asyncio.timeout(3):
            received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert dyno.requests[0].header("Upgrade") is None
