"""A real `dynos server` against a hostile client (issue 11): no traceback for any input."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from dynos.testing.harness import RunningServer, start_server


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
