"""Dyno ports as root: only the router and the app's own dynos reach a web dyno (any other
local process could spoof X-Forwarded-For); the server's firewall table lives exactly as long
as the server, killed or not, and no server touches another's."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from dynos.backends.firewall import table_name
from dynos.testing.harness import RunningServer, start_server, wait_for, wait_for_dynos
from tests.backends.test_firewall import connect_as, nft

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="firewall rules need root")

NEIGHBOURS = Path(__file__).parent / "apps" / "neighbours"
NOBODY = 65534


def has_table(server: RunningServer) -> bool:
    return f"table inet {table_name(server.process.pid)}\n" in nft("list", "tables")


def router_processes(server: RunningServer) -> int:
    children = psutil.Process(server.process.pid).children()
    return sum("dynos.router.worker" in child.cmdline() for child in children)


def test_only_the_router_and_the_apps_own_dynos_reach_a_web_dyno(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", "--router-processes", "2")
    try:
        assert router_processes(server) == 1  # and the server's own
        for app in ("guarded", "intruder"):
            server.create_app(app)
            server.deploy(app, NEIGHBOURS)
        server.scale("guarded", web=1, worker=1)
        wait_for_dynos(server, "guarded", {"web.1": "up", "worker.1": "up"})
        wait_for_dynos(server, "intruder", {"web.1": "up"})

        # The router gets through from both its processes: the kernel spreads new
        # connections over their sockets, so 20 of them all landing on one is 1 in 500,000.
        answers = []
        for _ in range(20):
            with server.router("guarded") as client:  # a new connection each
                response = client.get("/")
                assert response.status_code == 200
                answers.append(response.json())
        port = answers[0]["port"]
        assert {answer["port"] for answer in answers} == {port}

        # Any other local user, and another app's dyno, are refused at once.
        assert connect_as(NOBODY, "127.0.0.1", port) == "ConnectionRefusedError"
        with server.router("intruder") as client:
            intruder = client.get("/", params={"probe": str(port)}).json()
        assert intruder["uid"] != answers[0]["uid"]
        assert intruder["probe"] == "ConnectionRefusedError"

        # The app's own worker dyno (its app user) reaches its web dyno.
        wait_for(
            lambda: f"worker reached port {port}" in server.logs("guarded"),
            what="the worker reaching its web dyno",
        )
        assert "could not reach" not in server.logs("guarded")
        assert has_table(server)
    finally:
        assert server.stop() == 0
    assert not has_table(server)
    assert connect_as(NOBODY, "127.0.0.1", port) == "ConnectionRefusedError"  # nothing there


def test_a_killed_servers_table_goes_with_it_and_no_other_servers_does(tmp_path: Path) -> None:
    other = start_server(tmp_path / "other")
    try:
        first = start_server(tmp_path / "home")
        assert has_table(first) and has_table(other)
        first.process.kill()  # no chance to delete its table: the kernel does
        first.process.wait()
        assert not has_table(first)
        assert has_table(other)

        (first.home / "server.json").unlink()  # left by the killed server
        second = start_server(tmp_path / "home")
        try:
            assert has_table(second) and has_table(other)
        finally:
            second.stop()
        assert has_table(other)
    finally:
        other.stop()
    assert not has_table(other)
