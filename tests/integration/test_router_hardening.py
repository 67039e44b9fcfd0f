"""A real `dynos server` against a hostile client (issue 11): no traceback for any input,
connection caps that hold one address back while another client and the API still answer,
and the descriptor limit raised at start."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dynos.router.limits import limits_for
from dynos.testing.harness import RunningServer, start_server, wait_for


def server_log(server: RunningServer) -> str:
    return (server.home.parent / f"{server.home.name}-server.log").read_text(errors="replace")


@contextlib.contextmanager
def stopped_at_the_end(server: RunningServer) -> Iterator[RunningServer]:
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(data)
        received = bytearray()
        while chunk := s.recv(65536):
            received += chunk
        return bytes(received)


def test_no_client_input_writes_a_traceback_in_the_server_log(tmp_path: Path) -> None:
    with stopped_at_the_end(start_server(tmp_path / "home")) as server:
        port = server.router_port
        for _ in range(30):  # each of these raised TypeError in the compiled router
            assert exchange(port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 404 ")
            answer = exchange(
                port, b"GET / HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 404 ")
        started = time.monotonic()
        assert exchange(port, b"GET /\r\n").startswith(b"HTTP/1.1 400 ")
        assert time.monotonic() - started < 2  # not the 20 s header timeout
        server.stop()
    log = server_log(server)
    assert "Traceback" not in log
    assert "error while handling" not in log


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path / "home",
        *("--router-max-connections", "60", "--router-max-connections-per-client", "40"),
    )
    with stopped_at_the_end(server):
        yield server


def test_idle_connections_from_one_address_are_refused_past_the_cap_while_others_answer(
    capped: RunningServer,
) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(50):  # connected, and never a byte sent (a slowloris)
            held.append(socket.create_connection(("127.0.0.1", capped.router_port), timeout=10))
        time.sleep(0.5)
        answered = {}
        for number, sock in enumerate(held):
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # idle: nothing to read
                answered[number] = sock.recv(65536)
        assert sorted(answered) == list(range(40, 50))
        assert all(a.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") for a in answered.values())
        # Another client is answered (no app here: 404 is the router's answer), and the API.
        other = exchange(
            capped.router_port,
            b"GET / HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n",
            source="127.0.0.2",
        )
        assert other.startswith(b"HTTP/1.1 404 ")
        with capped.api() as api:
            assert api.get("/apps").status_code == 200
    finally:
        for sock in held:
            sock.close()
    # Once they close, the address is served again.
    wait_for(
        lambda: exchange(capped.router_port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 404"),
        10,
        "the address to be served again",
    )
    capped.stop()
    log = server_log(capped)
    assert "router: at most 60 client connections, 40 from one address" in log
    # Ten refusals, one line: the rest is counted (dynos.server_log).
    assert log.count('desc="Too many connections from one address"') == 2, log
    assert "(repeated 9 more times in the last" in log
    assert "Traceback" not in log


def test_the_server_raises_its_descriptor_limit_and_derives_its_caps(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, 512, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))  # the server inherits it
    try:
        server = start_server(tmp_path / "home")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with stopped_at_the_end(server):
        limit = psutil.Process(server.process.pid).rlimit(psutil.RLIMIT_NOFILE)
        assert limit == (hard, hard)
        server.stop()
    caps = limits_for(hard)
    assert (
        f"router: at most {caps.total} client connections, {caps.per_client} from one address "
        f"(file descriptor limit {hard};"
    ) in server_log(server)
