"""The CLI's transport: plain HTTP without a TLS context, and TLS still verified wherever a
URL is https (cli/client.py's PlainHttpTransport and transport_for), against real loopback
servers."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dynos.cli.client import ApiClient, PlainHttpTransport, transport_for
from dynos.errors import DynosError
from tests.platform.test_certificates import self_signed


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'[{"name": "hello"}]\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[int]]]:
    """A loopback server on port 0; its URL and the count of requests it answered."""
    answered: list[int] = []

    class Counting(Answer):
        def do_GET(self) -> None:
            answered.append(1)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", answered
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def plain() -> Iterator[tuple[str, list[int]]]:
    yield from serve()


@pytest.fixture
def self_signed_tls(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    cert, key = self_signed(["127.0.0.1", "localhost"])
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    yield from serve(context)


def test_a_plain_http_server_gets_the_plain_transport() -> None:
    assert isinstance(transport_for(httpx.URL("http://127.0.0.1:5050")), PlainHttpTransport)
    assert transport_for(httpx.URL("https://dynos.example.com")) is None  # httpx's, verified


def test_the_client_talks_to_a_plain_http_server(plain: tuple[str, list[int]]) -> None:
    url, answered = plain
    with ApiClient(url, "token") as client:
        assert client.request("GET", "/apps") == [{"name": "hello"}]
    assert answered == [1]


def test_the_plain_transport_refuses_https_without_connecting(
    self_signed_tls: tuple[str, list[int]],
) -> None:
    url, answered = self_signed_tls
    with (
        httpx.Client(transport=PlainHttpTransport()) as client,
        pytest.raises(httpx.UnsupportedProtocol),
    ):
        client.get(url)
    assert answered == []


def test_https_stays_verified_even_from_a_plain_http_api(
    plain: tuple[str, list[int]], self_signed_tls: tuple[str, list[int]]
) -> None:
    """A log session's URL may point elsewhere: an https one is verified, never sent through
    the plain API's unverifying transport (the self-signed server is refused)."""
    api, _ = plain
    tls_url, answered = self_signed_tls
    with ApiClient(api, "token") as client, pytest.raises(DynosError):
        list(client.stream_text(f"{tls_url}/log", read_timeout=5))
    assert answered == []
    with ApiClient(tls_url, "token") as client, pytest.raises(DynosError):
        client.request("GET", "/apps")
    assert answered == []
