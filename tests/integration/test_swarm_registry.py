"""The registry the swarm backend's nodes pull from: the server's own docker-registry."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest

from dynos.backends.registry import PlatformRegistry, answers, check
from dynos.errors import RegistryUnreachable


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_the_server_s_own_registry_starts_answers_and_stops(tmp_path: Path) -> None:
    address = free_address()
    own = PlatformRegistry(tmp_path / "registry", address)
    own.start()
    try:
        assert answers(address)
        check(address)  # no error
        assert (tmp_path / "registry" / "config.yml").read_text().count(address) == 1
        again = PlatformRegistry(tmp_path / "other", address)
        again.start()  # one answers already: used, not started twice
        assert not (tmp_path / "other").exists()
    finally:
        own.stop()
    assert not answers(address)


def test_no_registry_and_no_docker_registry_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = free_address()
    with pytest.raises(RegistryUnreachable, match="pass --registry HOST:PORT"):
        check(address)
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker-registry on it
    with pytest.raises(RegistryUnreachable, match="apt-get install docker-registry"):
        PlatformRegistry(tmp_path / "registry", address).start()


class _AuthOnly(http.server.BaseHTTPRequestHandler):
    """A registry behind htpasswd, as Debian's docker-registry service runs by default."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="Registry Realm"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_registry_behind_a_password_at_the_own_address_is_refused_not_adopted(
    tmp_path: Path,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        check(address)  # --registry: a registry, credentials are the engine's business
        own = PlatformRegistry(tmp_path / "registry", address)
        with pytest.raises(RegistryUnreachable, match=r"answers 401.*docker-registry"):
            own.start()
        assert not (tmp_path / "registry").exists()  # nothing started, nothing written
    finally:
        server.shutdown()
        server.server_close()
