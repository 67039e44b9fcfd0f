"""Back-pressure between client and dyno, driven through fake transports (no sockets).

Loopback sockets have buffers too large to make a transport pause on cue, so these tests call
the protocols' callbacks the way the event loop would and watch what they do to the other
side's transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import pytest

from dynos.logs.hub import LogHub
from dynos.router.client import BUFFER_LIMIT, ClientConnection
from dynos.router.dyno_slot import DynoSlot
from dynos.router.proxy import Router
from dynos.router.route import DynoEndpoint
from dynos.router.routing_table import RoutingTable
from dynos.router.upstream import UpstreamConnection, UpstreamPool
from tests.router.router_harness import APP, HOST, running_router, table_with

pytestmark = pytest.mark.anyio

ENDPOINT = DynoEndpoint("web.1", "127.0.0.1", 1)
POST_HEAD = b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.written += piece

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading, "resumed twice"
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class HeldPool(UpstreamPool):
    """A pool whose new connections open only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: asyncio.Future[UpstreamConnection] = asyncio.Future()
        self.tasks_before = asyncio.all_tasks()  # the test runner's, not the router's

    async def open(self, slot: DynoSlot) -> UpstreamConnection:
        return await self.opened


class TimingOutPool(UpstreamPool):
    async def open(self, slot: DynoSlot) -> UpstreamConnection:
        raise TimeoutError


async def connecting_done(pool: HeldPool) -> None:
    """Wait for the router's connecting task (the only task started since ``pool`` was
    made) to finish. Not every other task: anyio's test runner has one of its own."""
    await asyncio.gather(*(asyncio.all_tasks() - pool.tasks_before - {asyncio.current_task()}))


def slot_of(table: RoutingTable) -> DynoSlot:
    route = table.lookup(HOST)
    assert route is not None
    return route.slots[0]


def fake_upstream(
    pool: UpstreamPool, table: RoutingTable
) -> tuple[UpstreamConnection, FakeTransport]:
    transport = FakeTransport()
    conn = UpstreamConnection(slot_of(table), pool)
    conn.connection_made(cast(asyncio.Transport, transport))
    return conn, transport


def fake_client(router: Router) -> tuple[ClientConnection, FakeTransport]:
    transport = FakeTransport()
    conn = ClientConnection(router)
    conn.connection_made(cast(asyncio.Transport, transport))
    return conn, transport


async def test_full_dyno_socket_pauses_reading_the_client_until_it_drains() -> None:
    router = Router(table_with(APP, [ENDPOINT]), LogHub())
    upstream, dyno_side = fake_upstream(router.pool, router.table)
    router.pool.put(upstream, router.now)
    client, client_side = fake_client(router)

    client.data_received(POST_HEAD % (HOST.encode(), 1000) + b"x" * 100)
    assert dyno_side.written.endswith(b"\r\n\r\n" + b"x" * 100)  # pooled: sent at once
    upstream.pause_writing()
    assert not client_side.reading
    upstream.resume_writing()
    assert client_side.reading
    client.connection_lost(None)


async def test_full_client_socket_pauses_reading_the_dyno_until_it_drains() -> None:
    router = Router(table_with(APP, [ENDPOINT]), LogHub())
    upstream, dyno_side = fake_upstream(router.pool, router.table)
    router.pool.put(upstream, router.now)
    client, client_side = fake_client(router)

    client.data_received(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
    upstream.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    assert client_side.written.endswith(b"\r\n\r\n01234")
    client.pause_writing()
    assert not dyno_side.reading
    client.resume_writing()
    assert dyno_side.reading
    client.connection_lost(None)


async def test_request_body_held_while_connecting_is_bounded() -> None:
    pool = HeldPool()
    router = Router(table_with(APP, [ENDPOINT]), LogHub(), pool=pool)
    client, client_side = fake_client(router)

    body = b"y" * (BUFFER_LIMIT + 1)
    client.data_received(POST_HEAD % (HOST.encode(), 2 * len(body)) + body)
    assert not client_side.reading  # the dyno connection is not up: stop taking body

    upstream, dyno_side = fake_upstream(pool, router.table)
    pool.opened.set_result(upstream)
    await connecting_done(pool)
    assert dyno_side.written.endswith(body)  # what was held went to the dyno
    assert client_side.reading
    client.connection_lost(None)


async def test_dyno_connection_made_while_the_client_is_congested_starts_paused() -> None:
    pool = HeldPool()
    router = Router(table_with(APP, [ENDPOINT]), LogHub(), pool=pool)
    client, _ = fake_client(router)

    client.data_received(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
    client.pause_writing()
    upstream, dyno_side = fake_upstream(pool, router.table)
    pool.opened.set_result(upstream)
    await connecting_done(pool)
    assert dyno_side.written.startswith(b"GET / HTTP/1.1\r\n")
    assert not dyno_side.reading
    client.connection_lost(None)


async def test_connect_timeout_on_every_dyno_gives_503_and_h19_line() -> None:
    table = table_with(APP, [ENDPOINT])
    async with running_router(table, pool=TimingOutPool()) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST.encode())
        received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
        lines = r.router_lines(APP)
    assert received.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert lines[0].startswith('at=error code=H19 desc="Backend connection timeout" ')
    assert " dyno=web.1 connect=" in lines[0]
