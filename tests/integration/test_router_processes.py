"""Several router processes on one port: all serve, the server keeps the logs and metrics,
a dyno stops only once no process has a request in flight to it, one that dies comes back,
none outlives the server. (The reliability tests in tests/router run with two processes too.)"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import httpx
import psutil
import pytest

from dynos.testing.harness import RunningServer, start_server, wait_for, wait_for_dynos
from tests.integration.conftest import EXAMPLES

PROCESSES = 3


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "home", "--router-processes", str(PROCESSES))
    try:
        server.create_app("hello")
        server.deploy("hello", EXAMPLES / "hello")
        server.scale("hello", web=2)
        wait_for_dynos(server, "hello", {"web.1": "up", "web.2": "up"})
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


STEADY = Path(__file__).parents[1] / "router" / "apps" / "steady"


def router_workers(server: RunningServer) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(server.process.pid).children()
        if "dynos.router.worker" in child.cmdline()
    ]


def held_connections(server: RunningServer, count: int) -> list[HTTPConnection]:
    """``count`` client connections to the router, each with one request answered."""
    held = []
    for _ in range(count):
        conn = HTTPConnection("127.0.0.1", server.router_port, timeout=30)
        conn.request("GET", "/", headers={"Host": "hello.localhost"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.read().startswith(b"Hello from web.")
        held.append(conn)
    return held


def test_every_router_process_accepts_connections(routed: RunningServer) -> None:
    workers = router_workers(routed)
    assert len(workers) == PROCESSES - 1
    # Spread by a hash of the addresses: a process left without any of 48 is a 1e-8 chance.
    held = held_connections(routed, 48)
    try:
        owners = {}
        for process in [psutil.Process(routed.process.pid), *workers]:
            owners[process.pid] = sum(
                1
                for conn in process.net_connections("tcp")
                if conn.laddr and conn.laddr.port == routed.router_port and conn.raddr
            )
        assert sum(owners.values()) == 48
        assert all(owners.values()), owners
    finally:
        for conn in held:
            conn.close()


def test_the_server_has_every_processs_log_lines_and_metrics(routed: RunningServer) -> None:
    held = held_connections(routed, 12)  # over every process (see above)
    for conn in held:
        conn.close()

    def counted() -> bool:
        with routed.api() as api:
            text = api.get("/metrics").text
        return 'dynos_router_requests_total{app="hello",status="200"} 12.0' in text

    wait_for(counted, 10, "12 requests in the metrics")
    wait_for(lambda: routed.logs("hello").count("at=info method=GET") == 12, 10, "12 lines")


def owner(server: RunningServer, conn: HTTPConnection) -> int:
    """The pid of the router process that accepted ``conn``."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    for process in [psutil.Process(server.process.pid), *router_workers(server)]:
        for accepted in process.net_connections("tcp"):
            if accepted.raddr and accepted.raddr.port == client_port:
                return process.pid
    raise AssertionError(f"no router process holds the connection from port {client_port}")


def test_a_dyno_stops_only_once_another_processs_request_to_it_is_done(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "home", "--router-processes", "2", "--stop-grace", "10")
    try:
        server.create_app("steady")
        server.deploy("steady", STEADY)
        server.scale("steady", web=1)
        wait_for_dynos(server, "steady", {"web.1": "up"})
        [worker] = router_workers(server)
        for _ in range(100):  # a connection the other process accepted (half of them)
            conn = HTTPConnection("127.0.0.1", server.router_port, timeout=30)
            conn.request("GET", "/", headers={"Host": "steady.localhost"})
            assert conn.getresponse().read() == b"ok web.1"
            if owner(server, conn) == worker.pid:
                break
            conn.close()
        else:
            raise AssertionError("the other router process accepted none of 100 connections")
        # A POST is never retried: only draining can keep it from failing when web.1 stops
        # (the app stops at once on SIGTERM, whatever it has in flight).
        conn.request("POST", "/sleep/3", body=b"", headers={"Host": "steady.localhost"})
        time.sleep(0.5)
        restart = server.cli("ps:restart", "web.1", "-a", "steady")
        assert restart.returncode == 0
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"slept web.1")
        conn.close()
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_router_process_that_dies_is_started_again(routed: RunningServer) -> None:
    [first, *_] = router_workers(routed)
    first.kill()
    first.wait(10)

    def replaced() -> bool:
        workers = router_workers(routed)
        return len(workers) == PROCESSES - 1 and first.pid not in {w.pid for w in workers}

    wait_for(replaced, 15, "a new router process")
    for conn in held_connections(routed, 12):
        conn.close()


def test_a_second_server_on_the_router_port_is_refused(
    routed: RunningServer, tmp_path: Path
) -> None:
    second = subprocess.run(
        [
            *(sys.executable, "-m", "dynos", "server", "--home", str(tmp_path / "second")),
            *("--api-port", "0", "--router-host", "127.0.0.1", "--rendezvous-port", "0"),
            *("--router-port", str(routed.router_port), "--router-processes", str(PROCESSES)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert f"Port {routed.router_port} is already in use" in second.stderr
    for conn in held_connections(routed, 12):  # and the first one serves on
        conn.close()


def test_router_processes_exit_when_the_server_is_killed(routed: RunningServer) -> None:
    workers = router_workers(routed)
    dynos = [
        p for p in psutil.Process(routed.process.pid).children(recursive=True) if p not in workers
    ]
    routed.process.kill()  # no chance to tell them: their control sockets close
    routed.process.wait(10)
    try:
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
    finally:
        for dyno in dynos:  # a killed server leaves its dynos to the next one's start
            with contextlib.suppress(psutil.NoSuchProcess):
                dyno.kill()


def test_no_router_process_outlives_the_server(routed: RunningServer) -> None:
    workers = router_workers(routed)
    assert routed.stop() == 0
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{routed.router_port}/", headers={"Host": "hello.localhost"})
