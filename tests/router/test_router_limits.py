"""Connection caps: per client address and in all, from the descriptor limit (issue 11)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import pytest

from dynos.errors import UserError
from dynos.router.limits import (
    ConnectionCounts,
    ConnectionLimits,
    Refusal,
    chosen_limits,
    limits_for,
    most_connections,
    reserve_for,
)
from tests.router.router_harness import (
    APP,
    HOST,
    WireClient,
    fake_dynos,
    running_router,
    table_with,
)

pytestmark = pytest.mark.anyio

# ---- the rules (pure) ------------------------------------------------------------------------


def test_a_connection_past_the_per_client_cap_is_refused_and_not_counted() -> None:
    counts = ConnectionCounts(ConnectionLimits(total=10, per_client=2))
    assert counts.admit("10.0.0.1") is None
    assert counts.admit("10.0.0.1") is None
    assert counts.admit("10.0.0.1") is Refusal.PER_CLIENT
    assert counts.admit("10.0.0.2") is None
    assert (counts.total, counts.held_by("10.0.0.1")) == (3, 2)


def test_a_connection_past_the_total_is_refused_whoever_opens_it() -> None:
    counts = ConnectionCounts(ConnectionLimits(total=3, per_client=2))
    for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        assert counts.admit(address) is None
    assert counts.admit("10.0.0.3") is Refusal.TOTAL
    counts.release("10.0.0.1")
    assert counts.admit("10.0.0.3") is None


def test_releasing_frees_the_address_and_a_stray_release_is_a_bug() -> None:
    counts = ConnectionCounts(ConnectionLimits(total=3, per_client=1))
    assert counts.admit("::1") is None
    counts.release("::1")
    assert (counts.total, counts.held_by("::1")) == (0, 0)
    with pytest.raises(ValueError, match="no connection"):
        counts.release("::1")


@pytest.mark.parametrize("nofile", [64, 256, 1024, 4096, 20_000, 65_536, 1_048_576])
def test_default_limits_leave_a_reserve_below_the_descriptor_limit(nofile: int) -> None:
    limits = limits_for(nofile)
    # Two descriptors a connection, and the reserve for the API and the manager, fit.
    assert 2 * limits.total + reserve_for(nofile) <= nofile
    assert reserve_for(nofile) >= min(256, nofile // 2)
    assert 1 <= limits.per_client <= limits.total


def test_the_issue_11_machine_refuses_one_address_well_before_its_limit() -> None:
    # 20,000 descriptors: 22,000 connections from one address took everything.
    limits = limits_for(20_000)
    assert limits == ConnectionLimits(total=8_000, per_client=1_000)


def test_default_limits_on_a_common_soft_limit() -> None:
    assert limits_for(1024) == ConnectionLimits(total=384, per_client=64)


def test_options_override_the_defaults_within_the_descriptor_limit() -> None:
    assert chosen_limits(20_000, 500, None) == ConnectionLimits(total=500, per_client=64)
    assert chosen_limits(20_000, None, 10) == ConnectionLimits(total=8_000, per_client=10)
    assert chosen_limits(20_000, 100, 100) == ConnectionLimits(total=100, per_client=100)


def test_a_total_past_the_descriptor_limit_is_refused_with_what_to_do() -> None:
    most = most_connections(1024)
    assert chosen_limits(1024, most, None).total == most
    advice = r"--router-max-connections 1000 needs .*use 384 or fewer.*ulimit -Hn"
    with pytest.raises(UserError, match=advice):
        chosen_limits(1024, 1000, None)


def test_a_per_client_cap_above_the_total_is_refused() -> None:
    with pytest.raises(UserError, match="more than the router holds in all"):
        chosen_limits(20_000, 100, 200)


def test_each_router_process_gets_its_share() -> None:
    limits = ConnectionLimits(total=1001, per_client=65)
    assert limits.share(1) == limits
    assert limits.share(2) == ConnectionLimits(total=501, per_client=33)


# ---- real sockets ------------------------------------------------------------------------------


async def refused(port: int, source: str = "127.0.0.1") -> bytes:
    """Connect from ``source`` and return what the router sends before closing, within 2 s
    (b"" if it says nothing and keeps the connection open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        async with asyncio.timeout(2):
            return await reader.read(-1)
    except TimeoutError:
        return b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_idle_connections_past_the_per_client_cap_get_503_while_others_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="dynos.router"):
        limits = ConnectionLimits(total=12, per_client=5)
        async with (
            fake_dynos("web.1") as [dyno],
            running_router(table_with(APP, [dyno.endpoint]), limits=limits) as r,
            AsyncExitStack() as held,
        ):
            for _ in range(5):  # idle: connected, nothing sent
                await held.enter_async_context(WireClient.connect(r.port))
            answers = [await refused(r.port) for _ in range(3)]
            # Another address is served, and so is a new connection once one closes.
            async with WireClient.connect(r.port, "127.0.0.2") as other:
                response = await other.request("GET", "/", [("Host", HOST)])
            assert r.router.counts.held_by("127.0.0.1") == 5
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"\r\nConnection: close\r\n" in answer
            assert b"Too many connections" in answer
        assert response.status == 200
    said = [r.getMessage() for r in caplog.records]
    assert said, "a refusal is logged"
    assert all('desc="Too many connections from one address"' in m for m in said)
    assert all('fwd="127.0.0.1"' in m for m in said)


async def test_the_total_cap_refuses_every_address_and_frees_up_as_connections_close() -> None:
    limits = ConnectionLimits(total=4, per_client=3)
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint]), limits=limits) as r,
    ):
        async with AsyncExitStack() as held:
            for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3"):
                await held.enter_async_context(WireClient.connect(r.port, source))
            assert (await refused(r.port, "127.0.0.4")).startswith(b"HTTP/1.1 503 ")
        for _ in range(100):  # the router sees the closes
            if r.router.counts.total == 0:
                break
            await asyncio.sleep(0.01)
        async with WireClient.connect(r.port, "127.0.0.4") as client:
            response = await client.request("GET", "/", [("Host", HOST)])
        assert response.status == 200
