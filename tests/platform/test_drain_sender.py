"""platform/drain_sender.py with the real log hub, the real HTTP and syslog transports and a
receiver on loopback: an overflow is said by Heroku's L10 line; emitting never waits on a
drain; a name that resolves to loopback is refused at connection time without the allowance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from dynos.core.drain_queue import DeliveryRules
from dynos.core.drains import parse_drain_url
from dynos.logs.hub import LogHub
from dynos.platform.drain_sender import DrainSender, stop
from dynos.platform.drain_transports import (
    DeliveryFailed,
    HttpTransport,
    SyslogTransport,
    drain_tls,
    own_addresses,
)
from dynos.testing.drain_receivers import HttpReceiver, SyslogReceiver

pytestmark = pytest.mark.anyio


async def until(condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def http_sender(url: str, rules: DeliveryRules) -> DrainSender:
    target = parse_drain_url(url)
    transport = HttpTransport(target, "d.test", drain_tls(None), allow_loopback=True)
    return DrainSender("drain-1", "d.test", target, transport, rules)


async def test_an_overflow_is_said_by_an_l10_line_first_in_the_next_post() -> None:
    receiver = HttpReceiver(mode="hang")
    receiver.start()
    hub = LogHub()
    rules = DeliveryRules(capacity=20, batch_size=5, timeout=1, backoff=0.1, linger=0)
    sender = http_sender(f"http://127.0.0.1:{receiver.port}/", rules)
    hub.add_sink("app", sender.offer)
    task = asyncio.create_task(sender.run())
    try:
        hub.emit("app", "app", "web.1", "line 0")
        await until(lambda: len(receiver.posts) == 1, what="the first POST")  # it hangs
        started = time.perf_counter()
        for n in range(1, 101):
            hub.emit("app", "app", "web.1", f"line {n}")
        emitting = time.perf_counter() - started
        assert len(sender.queue) == 20 and sender.queue.dropped_total == 81
        receiver.mode = "ok"
        await until(lambda: len(receiver.messages()) >= 20, what="the held lines")
    finally:
        await stop(task)
        receiver.stop()
    assert emitting < 1, "emitting waited on the drain"
    messages = receiver.messages()
    l10 = [m for m in messages if b"Error L10" in m]
    assert len(l10) == 1
    assert (
        b" host dynos logplex - Error L10 (output buffer overflow): 81 messages dropped "
        in (l10[0])
    )
    texts = [m.rsplit(b" - ", 1)[1] for m in messages if b"Error L10" not in m]
    assert texts == [f"line {n}".encode() for n in range(20)]  # held in order, none twice
    # The L10 line leads the batch after the drops: it follows the one that was out ("line 0").
    assert messages.index(l10[0]) == 1


async def test_a_loopback_address_is_refused_at_connection_time() -> None:
    receiver = HttpReceiver()
    receiver.start()
    try:
        target = parse_drain_url(f"http://localhost:{receiver.port}/")  # resolved: loopback
        transport = HttpTransport(target, "d.x", drain_tls(None), allow_loopback=False)
        with pytest.raises(DeliveryFailed, match="loopback"):
            await transport.send("F", 1, b"3 abc")
        await transport.close()
        syslog = SyslogTransport(
            parse_drain_url(f"syslog://localhost:{receiver.port}"),
            drain_tls(None),
            allow_loopback=False,
        )
        with pytest.raises(DeliveryFailed, match="loopback"):
            await syslog.send("F", 1, b"3 abc")
    finally:
        receiver.stop()
    assert receiver.posts == []


async def test_the_machines_own_lan_address_is_refused_at_connection_time() -> None:
    """A receiver on all interfaces stands for the dynos' and the server's ports there."""
    own = sorted(
        str(a) for a in own_addresses() if a.version == 4 and not (a.is_loopback or a.is_link_local)
    )
    if not own:
        pytest.skip("this machine has no IPv4 address besides loopback")
    receiver = HttpReceiver(host="0.0.0.0")
    receiver.start()
    try:
        for url in (f"http://{own[0]}:{receiver.port}/", f"syslog://{own[0]}:{receiver.port}"):
            target = parse_drain_url(url)
            transport: HttpTransport | SyslogTransport = (
                HttpTransport(target, "d.x", drain_tls(None), allow_loopback=False)
                if url.startswith("http")
                else SyslogTransport(target, drain_tls(None), allow_loopback=False)
            )
            with pytest.raises(DeliveryFailed, match="an address of this server"):
                await transport.send("F", 1, b"3 abc")
            await transport.close()
    finally:
        receiver.stop()
    assert receiver.posts == []


async def test_a_syslog_drain_reconnects_after_its_receiver_restarts() -> None:
    receiver = SyslogReceiver()
    receiver.start()
    port = receiver.port
    hub = LogHub()
    target = parse_drain_url(f"syslog://127.0.0.1:{port}")
    transport = SyslogTransport(target, drain_tls(None), allow_loopback=True)
    rules = DeliveryRules(backoff=0.1, linger=0)
    sender = DrainSender("drain-2", "d.sys", target, transport, rules)
    hub.add_sink("app", sender.offer)
    task = asyncio.create_task(sender.run())
    again = SyslogReceiver(port=port)
    try:
        hub.emit("app", "app", "web.1", "before")
        await until(lambda: len(receiver.messages()) == 1, what="the first line")
        receiver.stop()
        await asyncio.sleep(0.2)  # the drain sees the connection end
        again.start()
        hub.emit("app", "app", "web.1", "after")
        await until(lambda: len(again.messages()) == 1, what="a line on a new connection")
    finally:
        await stop(task)
        again.stop()
    assert again.messages()[0].endswith(b"d.sys app web.1 - after")
