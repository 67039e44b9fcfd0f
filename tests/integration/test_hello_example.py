"""examples/hello shows the platform at its best: a kept-alive connection is not slowed by
Nagle's algorithm waiting on the client's delayed ACK (40 ms a request with http.server's
defaults, which write the headers and the body separately)."""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import time

from tests.integration.conftest import EXAMPLES, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_the_hello_web_process_answers_a_reused_connection_without_delay() -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DYNO": "web.1"}
    web = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "hello" / "web.py")], env=env, stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: answers(port), 20, "the hello web process")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        times = []
        for _ in range(25):
            started = time.perf_counter()
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.read() == b"Hello from web.1!\n"
            times.append(time.perf_counter() - started)
        connection.close()
        # 40 ms or more each before; well under a millisecond now (10 ms leaves room for load).
        assert statistics.median(times[5:]) < 0.010, times
    finally:
        web.kill()
        web.wait()
