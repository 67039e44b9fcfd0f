"""Draining a dyno before it stops, and waking an idle app, through the routing table."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.router.router_harness import (
    APP,
    client,
    fake_dynos,
    running_router,
    table_with,
)

pytestmark = pytest.mark.anyio

# ---- draining -----------------------------------------------------------------------------


async def test_wait_drained_returns_when_the_request_in_flight_finishes() -> None:
    async with fake_dynos("web.1", "web.2") as [leaving, staying]:
        table = table_with(APP, [leaving.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            slow = asyncio.create_task(http.get("/slow"))
            await leaving.arrived.get()
            assert table.in_flight(APP, "web.1") == 1
            table.set_app(APP, [staying.endpoint])  # web.1 takes no new request
            drained = asyncio.create_task(table.wait_drained(APP, "web.1", 10))
            after = await http.get("/")  # goes to web.2 meanwhile
            await asyncio.sleep(0.05)
            assert not drained.done()
            leaving.release.set()
            assert (await slow).status_code == 200
            async with asyncio.timeout(2):
                await drained
            assert table.in_flight(APP, "web.1") == 0
    assert after.json()["dyno"] == "web.2"


async def test_wait_drained_gives_up_after_its_timeout() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            slow = asyncio.create_task(http.get("/slow"))
            await dyno.arrived.get()
            table.set_app(APP, [])
            started = time.monotonic()
            await table.wait_drained(APP, "web.1", 0.1)
            assert time.monotonic() - started < 2
            assert table.in_flight(APP, "web.1") == 1
            dyno.release.set()
            await slow


async def test_wait_drained_returns_at_once_for_a_dyno_with_nothing_in_flight() -> None:
    table = table_with(APP, [])
    async with asyncio.timeout(1):
        await table.wait_drained(APP, "web.7", 30)


async def test_idle_connections_to_a_removed_dyno_are_closed() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            await http.get("/")  # leaves one keep-alive connection in the pool
            table.set_app(APP, [])
            async with asyncio.timeout(2):
                assert await dyno.disconnects.get() == 1


async def test_connection_of_a_request_that_ends_after_removal_is_not_reused() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            slow = asyncio.create_task(http.get("/slow"))
            await dyno.arrived.get()
            table.set_app(APP, [])
            dyno.release.set()
            assert (await slow).status_code == 200
            async with asyncio.timeout(2):
                assert await dyno.disconnects.get() == 1
            table.set_app(APP, [dyno.endpoint])  # back (as after a restart)
            assert (await http.get("/")).status_code == 200
    assert dyno.connections == 2


# ---- waking an idle app -------------------------------------------------------------------


async def test_request_to_an_idle_app_wakes_it_once_and_waits_for_its_dyno() -> None:
    async with fake_dynos("web.1") as [dyno]:
        woken: list[str] = []
        table = table_with(APP, [], idle=True, on_wake=woken.append)
        async with running_router(table) as r, client(r.port) as http:
            held = [asyncio.create_task(http.get(f"/{n}")) for n in range(3)]
            # The first request wakes the app (polled: a loaded machine outlasts a fixed sleep).
            while not woken:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the other two, if they arrive, wait too
            assert woken == [APP]
            assert not any(task.done() for task in held)
            table.set_app(APP, [dyno.endpoint])  # the manager: the dyno is up
            responses = await asyncio.gather(*held)
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert sorted(got.path for got in dyno.requests) == ["/0", "/1", "/2"]
    assert woken == [APP]  # once, whenever the others arrived


async def test_idle_app_that_does_not_wake_in_time_gets_h20() -> None:
    table = table_with(APP, [])
    table.set_app(APP, [], idle=True)
    async with running_router(table, wake_timeout=0.1) as r, client(r.port) as http:
        response = await http.get("/")
        lines = r.router_lines(APP)
    assert response.status_code == 503
    assert lines[0].startswith('at=error code=H20 desc="App boot timeout" method=GET ')


async def test_wait_for_backends() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [])
        assert not await table.wait_for_backends(APP, 0.01)
        waiting = asyncio.create_task(table.wait_for_backends(APP, 5))
        await asyncio.sleep(0)
        table.set_app(APP, [dyno.endpoint])
        assert await waiting
        assert await table.wait_for_backends(APP, 0)


async def test_last_request_time_is_recorded_per_app() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        created = table.last_request_at(APP)
        async with running_router(table) as r, client(r.port) as http:
            await asyncio.sleep(0.02)
            before = time.monotonic()
            await http.get("/")
            assert before <= table.last_request_at(APP) <= time.monotonic()
    assert created > 0
    assert table.last_request_at("nope") == 0.0


async def test_crashed_app_is_not_held_but_answered_h10() -> None:
    woken: list[str] = []
    table = table_with(APP, [], crashed=True, on_wake=woken.append)
    async with running_router(table) as r, client(r.port) as http:
        response = await http.get("/")
    assert response.status_code == 503
    assert woken == []
