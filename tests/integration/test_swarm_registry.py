"""The registry the swarm backend's nodes pull from: the server's own docker-registry."""

from __future__ import annotations

import socket
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
