"""Retries, quarantine and the request timeout (H12), with fake dynos over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest

from dynos.router.dyno_slot import DynoSlot
from dynos.router.upstream import UpstreamConnection, UpstreamPool
from dynos.testing.fakes import FakeClock
from tests.router.router_harness import (
    APP,
    HOST,
    client,
    dead_endpoint,
    fake_dynos,
    raw_exchange,
    running_router,
    table_with,
)

pytestmark = pytest.mark.anyio

H = HOST.encode()


def first_choice() -> float:
    """A "random" source that makes the balancer prefer the first dyno on a tie."""
    return 0.0


async def test_get_whose_dyno_closes_before_answering_is_retried_on_another() -> None:
    async with fake_dynos("web.1", drops=True) as [dying], fake_dynos("web.2") as [healthy]:
        table = table_with(APP, [dying.endpoint, healthy.endpoint])
        async with (
            running_router(table, random=first_choice) as r,
            client(r.port) as http,
        ):
            response = await http.get("/")
            lines = r.router_lines(APP)
    assert response.status_code == 200
    assert response.json()["dyno"] == "web.2"
    assert [got.path for got in dying.requests] == ["/"]  # it was tried first
    assert len(lines) == 1 and " dyno=web.2 " in lines[0] and " status=200 " in lines[0]


async def test_put_with_a_body_is_retried_with_the_whole_body() -> None:
    async with fake_dynos("web.1", drops=True) as [dying], fake_dynos("web.2") as [healthy]:
        table = table_with(APP, [dying.endpoint, healthy.endpoint])
        async with (
            running_router(table, random=first_choice) as r,
            client(r.port) as http,
        ):
            response = await http.put("/thing", content=b"x" * 5000)
    assert response.status_code == 200
    assert response.json()["body_size"] == 5000
    assert len(dying.requests[0].body) == 5000


async def test_post_whose_dyno_closes_before_answering_is_not_retried() -> None:
    async with fake_dynos("web.1", drops=True) as [dying], fake_dynos("web.2") as [healthy]:
        table = table_with(APP, [dying.endpoint, healthy.endpoint])
        async with (
            running_router(table, random=first_choice) as r,
            client(r.port) as http,
        ):
            response = await http.post("/order", content=b"one coffee")
            lines = r.router_lines(APP)
    assert response.status_code == 503
    assert healthy.requests == []  # the order was not sent twice
    assert lines[0].startswith('at=error code=H13 desc="Connection closed without response"')
    assert " dyno=web.1 " in lines[0]


async def test_get_is_not_retried_once_the_response_has_started() -> None:
    async with fake_dynos("web.1") as [first], fake_dynos("web.2") as [second]:
        table = table_with(APP, [first.endpoint, second.endpoint])
        async with running_router(table, random=first_choice) as r:
            received = b""
            with contextlib.suppress(ConnectionResetError):
                received = await raw_exchange(
                    r.port, b"GET /truncated HTTP/1.1\r\nHost: %s\r\n\r\n" % H
                )
            lines = r.router_lines(APP)
    assert second.requests == []
    assert b"only ten.." in received or received == b""
    assert lines[0].startswith('at=error code=H18 desc="Server Request Interrupted"')


async def test_every_dyno_closing_without_answer_gives_h13_after_trying_each_once() -> None:
    async with fake_dynos("web.1", "web.2", drops=True) as dynos:
        table = table_with(APP, [d.endpoint for d in dynos])
        async with running_router(table) as r, client(r.port) as http:
            response = await http.get("/")
    assert response.status_code == 503
    assert [len(d.requests) for d in dynos] == [1, 1]


async def test_refused_dyno_is_quarantined_and_skipped_by_the_next_requests() -> None:
    async with fake_dynos("web.2") as [live]:
        table = table_with(APP, [dead_endpoint("web.1"), live.endpoint])
        async with (
            running_router(table, random=first_choice) as r,
            client(r.port) as http,
        ):
            statuses = [(await http.get("/")).status_code for _ in range(5)]
            route = table.lookup(HOST)
            assert route is not None
            dead = route.slots[0]
            assert dead.quarantined_until > r.router.now
    assert statuses == [200] * 5
    assert len(live.requests) == 5


async def test_dyno_not_answering_within_the_app_timeout_gives_h12() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [])
        table.set_app(APP, [dyno.endpoint], request_timeout=0.2)
        async with running_router(table) as r, client(r.port) as http:
            response = await http.get("/slow")
            lines = r.router_lines(APP)
            route = table.lookup(HOST)
            assert route is not None
            assert route.slots[0].idle == []  # the router let go of that connection
            assert table.in_flight(APP, "web.1") == 0
    assert response.status_code == 503
    assert re.fullmatch(
        r'at=error code=H12 desc="Request timeout" method=GET path="/slow" .* '
        r"dyno=web\.1 connect=\d+ms service=\d+ms status=503 bytes= protocol=http",
        lines[0],
    )


async def test_h12_comes_at_the_apps_timeout_on_the_routers_clock() -> None:
    """Heroku's 30 s, on a fake clock: nothing at 29.9 s, H12 with service=30000ms at 30."""
    clock = FakeClock()
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [])
        table.set_app(APP, [dyno.endpoint], request_timeout=30)
        async with running_router(table, clock=clock) as r, client(r.port) as http:
            answer = asyncio.create_task(http.get("/slow"))
            await dyno.arrived.get()
            clock.advance(29.9)
            r.router.check_deadlines()
            await asyncio.sleep(0)
            assert not answer.done()
            assert table.in_flight(APP, "web.1") == 1
            clock.advance(0.1)
            r.router.check_deadlines()
            response = await answer
            lines = r.router_lines(APP)
            assert table.in_flight(APP, "web.1") == 0
    assert response.status_code == 503
    assert re.fullmatch(
        r'at=error code=H12 desc="Request timeout" method=GET path="/slow" .* '
        r"dyno=web\.1 connect=0ms service=30000ms status=503 bytes= protocol=http",
        lines[0],
    )


async def test_request_timeout_is_per_app_and_a_fast_answer_is_unaffected() -> None:
    clock = FakeClock()
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [])
        table.set_app(APP, [dyno.endpoint], request_timeout=30)
        async with running_router(table, clock=clock) as r, client(r.port) as http:
            fast = await http.get("/")
            clock.advance(31)  # longer than the timeout, between requests
            r.router.check_deadlines()
            again = await http.get("/")
    assert (fast.status_code, again.status_code) == (200, 200)


async def test_client_that_does_not_finish_its_head_in_time_is_dropped() -> None:
    clock = FakeClock()
    async with running_router(table_with(APP, []), clock=clock) as r:  # header_timeout 20
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\nX-Slow: " % H)
        await asyncio.sleep(0.05)  # the router reads the start of the head
        clock.advance(19)
        r.router.check_deadlines()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await reader.read(-1)  # still open at 19 s
        clock.advance(1.1)
        r.router.check_deadlines()
        async with asyncio.timeout(2):
            received = await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert received == b""


async def test_connection_that_never_sends_a_request_is_dropped_after_the_header_timeout() -> None:
    async with running_router(table_with(APP, []), header_timeout=0.1) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        async with asyncio.timeout(2):
            assert await reader.read(-1) == b""
        writer.close()
        await writer.wait_closed()


# ---- the router's own bugs ----------------------------------------------------------------


@pytest.mark.planted_bug
async def test_a_bug_while_routing_answers_h99_and_the_router_goes_on() -> None:
    # (Bugs are planted through the objects the router is given: its compiled modules call
    # each other directly, so patching a module's function would not reach them.)
    def broken() -> float:
        raise RuntimeError("a bug")

    async with (
        fake_dynos("web.1", "web.2") as dynos,
        running_router(table_with(APP, [d.endpoint for d in dynos])) as r,
    ):
        healthy, r.router.random = r.router.random, broken  # the balancer's dice
        async with client(r.port) as http:
            failed = await http.get("/")
        r.router.random = healthy
        lines = r.router_lines(APP)
        async with client(r.port) as http:
            after = await http.get("/")
    assert failed.status_code == 503
    assert lines[0].startswith('at=error code=H99 desc="Platform error" method=GET ')
    assert after.status_code == 200


class BrokenConnection(UpstreamConnection):
    """A dyno connection whose code fails on the response head, once."""

    broken = True

    def on_headers_complete(self) -> None:
        if BrokenConnection.broken:
            BrokenConnection.broken = False
            raise RuntimeError("a bug")
        super().on_headers_complete()


class BrokenPool(UpstreamPool):
    async def open(self, slot: DynoSlot) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        endpoint = slot.endpoint
        _, conn = await loop.create_connection(
            lambda: BrokenConnection(slot, self), endpoint.host, endpoint.port
        )
        return conn


@pytest.mark.planted_bug
async def test_a_bug_while_relaying_a_response_answers_h99() -> None:
    BrokenConnection.broken = True

    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint]), pool=BrokenPool()) as r,
    ):
        async with client(r.port) as http:
            failed = await http.get("/")
        async with client(r.port) as http:
            after = await http.get("/")
        lines = r.router_lines(APP)
    assert failed.status_code == 503
    assert lines[0].startswith('at=error code=H99 desc="Platform error" method=GET ')
    assert after.status_code == 200
