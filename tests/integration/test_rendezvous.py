"""The rendezvous listener (api/rendezvous.py) from a plain TLS client, byte by byte: what the
heroku CLI sees (tests/heroku/test_heroku_run.py drives the CLI itself), and what a client that
does not hold a dyno's secret gets: a refusal, and nothing started."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect as websocket

from dynos.core.rendezvous import GREETING, exit_marker
from tests.integration.conftest import RunningServer, each_test, started, wait_for
from tests.integration.test_one_off import ENVECHO

APP = "rvapp"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = next(started(tmp_path_factory.mktemp("rendezvous") / "home", "--stop-grace", "2"))
    running.create_app(APP)
    running.deploy(APP, ENVECHO)
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


def attached(server: RunningServer, command: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.post(
            f"/apps/{APP}/dynos", json={"command": command, "attach": True, "force_no_tty": True}
        )
    assert response.status_code == 201, response.text
    dyno: dict[str, Any] = response.json()
    return dyno


def connect(server: RunningServer, url: str) -> ssl.SSLSocket:
    """A TLS connection to ``url``'s host and port, verified against the platform CA only."""
    parts = urlsplit(url)
    assert parts.scheme == "rendezvous" and parts.hostname and parts.port
    context = ssl.create_default_context(cafile=server.home / "tls" / "ca.pem")
    raw = socket.create_connection((parts.hostname, parts.port), timeout=20)
    return context.wrap_socket(raw, server_hostname=parts.hostname)


def read_all(sock: ssl.SSLSocket) -> bytes:
    seen = b""
    while data := sock.recv(65536):
        seen += data
    return seen


def path(url: str) -> bytes:
    return urlsplit(url).path[1:].encode()


def states(server: RunningServer) -> dict[str, str]:
    """The app's one-off dynos and their states (its web dyno left out)."""
    with server.api() as api:
        dynos = api.get(f"/apps/{APP}/dynos").json()
    return {d["name"]: d["state"] for d in dynos if d["type"] == "run"}


def test_the_secret_starts_the_dyno_and_the_exit_status_ends_the_stream(
    server: RunningServer,
) -> None:
    dyno = attached(server, "cat; echo to-stderr >&2; exit 5")
    url = dyno["attach_url"]
    assert url.startswith("rendezvous://127.0.0.1:") and dyno["state"] == "starting"
    with connect(server, url) as sock:
        sock.sendall(path(url) + b"\r\n")
        assert sock.recv(65536) == GREETING  # alone: the CLI drops its first chunk whole
        sock.sendall(b"typed\n\x04")  # without a tty, ^D is the end of stdin
        seen = read_all(sock)
    assert seen.endswith(exit_marker(5))
    assert b"typed\n" in seen and b"to-stderr\n" in seen


def test_a_wrong_secret_is_refused_and_the_dyno_waits_on_for_the_right_one(
    server: RunningServer,
) -> None:
    dyno = attached(server, "echo attached")
    url = dyno["attach_url"]
    wrong = path(url)[:-4] + (b"AAAA" if not path(url).endswith(b"AAAA") else b"BBBB")
    with connect(server, url) as sock:
        sock.sendall(wrong + b"\r\n")
        refused = read_all(sock)
    assert refused.startswith(GREETING) and refused.endswith(exit_marker(1))
    assert b"This attach_url is wrong or was used already" in refused
    assert states(server) == {dyno["name"]: "starting"}  # nothing started
    with connect(server, url) as sock:
        sock.sendall(path(url) + b"\r\n")
        assert read_all(sock) == GREETING + b"attached\n" + exit_marker(0)
    with connect(server, url) as sock:  # one use: the dyno is gone, and so is its secret
        sock.sendall(path(url) + b"\r\n")
        assert b"wrong or was used already" in read_all(sock)


def test_the_websocket_and_the_rendezvous_share_one_secret_used_once(
    server: RunningServer,
) -> None:
    dyno = attached(server, "sleep 30")
    url = dyno["attach_url"]
    with connect(server, url) as first:
        first.sendall(path(url) + b"\r\n")
        assert first.recv(65536) == GREETING
        with connect(server, url) as second:  # while the first client holds the dyno
            second.sendall(path(url) + b"\r\n")
            assert b"wrong or was used already" in read_all(second)
        with websocket(dyno["attach_websocket_url"], proxy=None) as third:
            assert json.loads(third.recv(timeout=20))["error"]["id"] == "conflict"


@pytest.mark.parametrize(
    "line", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff\xfe\r\n", b"x" * 5000]
)
def test_anything_but_an_attach_line_is_answered_in_one_line_and_closed(
    server: RunningServer, line: bytes
) -> None:
    url = attached(server, "true")["attach_url"]
    with connect(server, url) as sock:
        sock.sendall(line)
        answer = read_all(sock)
    assert answer.startswith(GREETING) and answer.endswith(exit_marker(1))
    assert b"attach line" in answer
    log = (server.home.parent / f"{server.home.name}-server.log").read_text()
    assert "Traceback" not in log


def test_a_client_without_tls_or_the_ca_gets_nothing(server: RunningServer) -> None:
    url = attached(server, "true")["attach_url"]
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as plain:
        plain.sendall(path(url) + b"\r\n")  # the secret in clear: not a TLS handshake
        with contextlib.suppress(ConnectionResetError):
            while data := plain.recv(65536):
                answer += data
    assert GREETING not in answer  # at most a TLS alert, then closed
    raw = socket.create_connection((parts.hostname, parts.port), timeout=20)
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not vouch for it
        ssl.create_default_context().wrap_socket(raw, server_hostname=parts.hostname)
    raw.close()
    assert list(states(server).values()) == ["starting"]


def test_a_client_that_leaves_ends_its_dyno(server: RunningServer) -> None:
    dyno = attached(server, "sleep 300")
    url = dyno["attach_url"]
    with connect(server, url) as sock:
        sock.sendall(path(url) + b"\r\n")
        assert sock.recv(65536) == GREETING
        wait_for(lambda: states(server) == {dyno["name"]: "up"}, what="the dyno to be up")
    started = time.monotonic()
    wait_for(lambda: states(server) == {}, what="the dyno to end with its client")
    assert time.monotonic() - started < 10
    logs = server.logs(APP)
    assert "Client connection closed. Sending SIGHUP to all processes" in logs


def test_a_client_that_says_nothing_is_closed_after_10_seconds(server: RunningServer) -> None:
    url = attached(server, "true")["attach_url"]
    with connect(server, url) as sock:
        sock.settimeout(30)
        started = time.monotonic()
        assert read_all(sock) == b""  # nothing said: nothing answered, closed
        assert 9 < time.monotonic() - started < 20
    assert list(states(server).values()) == ["starting"]


def test_a_server_that_stops_tells_its_clients_their_dynos_exit_status(
    own_server: RunningServer,
) -> None:
    own_server.create_app(APP)
    own_server.deploy(APP, ENVECHO)
    dyno = attached(own_server, "sleep 300")
    url = dyno["attach_url"]
    with connect(own_server, url) as sock:
        sock.sendall(path(url) + b"\r\n")
        assert sock.recv(65536) == GREETING
        wait_for(lambda: states(own_server) == {dyno["name"]: "up"}, what="the dyno up")
        assert own_server.stop() == 0
        assert read_all(sock) == exit_marker(143)  # SIGTERM: not a silent close (exit 0)
