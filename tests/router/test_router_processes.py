"""Pieces of the router processes (router/processes.py, router/worker.py) on their own: the
listening sockets that share the router's port, and the router lines shipped to the server.
The processes at work are in tests/integration/test_router_processes.py."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.router.processes import LOG_EVERY, emit_shipped, listening_sockets
from dynos.router.worker import ForwardedLogs


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    """Sockets a test opens; closed after it."""
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def reuse_port(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def test_one_process_gets_one_plain_socket(held: list[socket.socket]) -> None:
    held += listening_sockets("127.0.0.1", 0, 1)
    [sock] = held
    assert sock.getsockname()[1] != 0
    assert not reuse_port(sock)
    with socket.create_connection(sock.getsockname(), timeout=5):
        pass


def test_several_processes_get_a_socket_each_on_one_port(held: list[socket.socket]) -> None:
    held += listening_sockets("127.0.0.1", 0, 3)
    assert len(held) == 3
    assert len({sock.getsockname() for sock in held}) == 1
    assert all(reuse_port(sock) for sock in held)


def test_connections_are_spread_over_every_socket(held: list[socket.socket]) -> None:
    held += listening_sockets("127.0.0.1", 0, 3)
    clients = [socket.create_connection(held[0].getsockname(), timeout=5) for _ in range(60)]
    try:
        accepted = []
        for sock in held:
            count = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        # By a hash of the addresses: a socket left without any of 60 is a 1e-10 chance.
        assert sum(accepted) == 60
        assert all(accepted), accepted
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("count", [1, 3])
def test_a_port_in_use_is_refused(held: list[socket.socket], count: int) -> None:
    other = socket.create_server(("127.0.0.1", 0))
    held.append(other)
    with pytest.raises(OSError) as refused:
        listening_sockets("127.0.0.1", other.getsockname()[1], count)
    assert refused.value.errno == errno.EADDRINUSE


def test_a_second_server_cannot_join_the_first_ones_sockets(held: list[socket.socket]) -> None:
    held += listening_sockets("127.0.0.1", 0, 2)
    with pytest.raises(OSError) as refused:
        listening_sockets("127.0.0.1", held[0].getsockname()[1], 2)
    assert refused.value.errno == errno.EADDRINUSE


class Control:
    """The worker's end of the control socket: what it was given to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(message)))  # what crosses the socket


def test_shipped_lines_reach_the_servers_hub_as_emitted_there() -> None:
    first = datetime(2026, 11, 27, 9, 30, 0, 123456, tzinfo=UTC)
    second = first + timedelta(milliseconds=3)
    turns = [  # two loop turns of the router, as its request log hands them over
        (first, [("a", 'at=info path="/" status=200'), ("b", 'at=info path="/x" status=404')]),
        (second, [("a", 'at=error code=H13 desc="Connection closed without response"')]),
    ]

    async def ship() -> list[dict[str, Any]]:
        control = Control()
        forwarded = ForwardedLogs(control.send)
        for at, lines in turns:
            forwarded.emit_batch(PLATFORM, "router", at, lines)
        assert control.sent == []  # nothing goes before the timer
        await asyncio.sleep(LOG_EVERY * 3)
        return control.sent

    [message] = asyncio.run(ship())
    assert len(message["logs"]) == 2  # one timestamp per loop turn, not per line
    server, direct = LogHub(), LogHub()
    emit_shipped(server, message["logs"])
    for at, lines in turns:
        for app, line in lines:
            direct.emit(app, PLATFORM, "router", line, at)
    for app in ("a", "b"):
        assert server.recent(app, 10) == direct.recent(app, 10)


def test_send_ships_at_once_and_leaves_nothing_for_the_timer() -> None:
    async def ship() -> list[dict[str, Any]]:
        control = Control()
        forwarded = ForwardedLogs(control.send)
        forwarded.emit("a", PLATFORM, "router", "at=info status=200")
        forwarded.send()
        await asyncio.sleep(LOG_EVERY * 3)
        return control.sent

    [message] = asyncio.run(ship())
    [[_, app, line]] = message["logs"]
    assert (app, line) == ("a", "at=info status=200")
