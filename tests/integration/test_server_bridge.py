"""A swarm server's own bridge on the manager (its one-offs and builds) against the real
engine and kernel: pruned while empty and made again by the next build, its interface has
the name the server's fence matches, so the new bridge is fenced as the old one was.

Needs root (nftables) and a running engine with the stack image.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import docker
import docker.errors
import pytest

from dynos.backends.engine import (
    BRIDGE_NAME,
    bridge_interface,
    dyno_network,
    network_gateway,
    server_bridge,
    server_network,
)
from dynos.backends.firewall import PortGuard
from dynos.core.containers import DEFAULT_STACK_IMAGE, LABEL
from dynos.errors import PlatformError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="nftables rules need root"),
]

PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def server() -> Iterator[str]:
    """A server id of this test's own; its network removed after."""
    server = uuid.uuid4().hex[:16]
    yield server
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}.test"}):
        if container.labels.get(f"{LABEL}.test") == server:
            container.remove(force=True)
    with contextlib.suppress(docker.errors.NotFound):
        client.networks.get(server_network(server)).remove()
    client.close()


def interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def probe(engine: docker.DockerClient, server: str, network: str, port: int) -> str:
    """From a container on ``network``, a connection to the bridge's gateway (a private
    address of this machine) at ``port``: "connected" or why not."""
    gateway = network_gateway(engine, network).address
    script = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({gateway!r}, {port}), timeout=3).close()\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('failed', type(exc).__name__)\n"
    )
    output = engine.containers.run(
        DEFAULT_STACK_IMAGE,
        ["python3", "-c", script],
        network=network,
        remove=True,
        labels={f"{LABEL}.test": server},
    )
    return bytes(output).decode().strip()


def test_a_pruned_server_bridge_made_again_has_the_interface_its_fence_matches(
    engine: docker.DockerClient, server: str, tmp_path: Path
) -> None:
    network, interface = server_bridge(engine, server)
    assert network == server_network(server) and interface == bridge_interface(network)
    assert len(interface) <= 15 and interface in interfaces()
    assert engine.networks.get(network).attrs["Options"][BRIDGE_NAME] == interface
    assert bridge_interface(server_network(uuid.uuid4().hex[:16])) != interface
    with socket.create_server(("0.0.0.0", 0)) as listener:
        port = listener.getsockname()[1]
        assert probe(engine, server, network, port) == "connected"  # the control: unfenced
        guard = PortGuard.open(tmp_path / "home")
        try:
            guard.fence(interface, PRIVATE, [])
            assert probe(engine, server, network, port).startswith("failed")

            # An operator prunes the empty network; the next build makes it again (the
            # container builder asks dyno_network for it before each build's container).
            before = engine.networks.get(network).id
            done = subprocess.run(
                [
                    "docker",
                    "network",
                    "prune",
                    "--force",
                    "--filter",
                    f"label=io.dynos.network={network}",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert interface not in interfaces()
            with pytest.raises(docker.errors.NotFound):
                engine.networks.get(network)
            assert dyno_network(engine, network) == network
            assert engine.networks.get(network).id != before
            assert interface in interfaces()  # the same name, which the fence matches
            assert probe(engine, server, network, port).startswith("failed")
        finally:
            guard.close()


def test_a_server_bridge_left_under_the_engines_own_name_is_made_again(
    engine: docker.DockerClient, server: str
) -> None:
    """One an older dynos made (its interface br-<id>, which no fence would follow after a
    prune) is replaced by one with the fixed name; while a container uses it, the server
    says what to do."""
    name = server_network(server)
    old = engine.networks.create(name, driver="bridge", labels={"io.dynos.network": name})
    holder = engine.containers.run(
        DEFAULT_STACK_IMAGE,
        ["sleep", "60"],
        network=name,
        detach=True,
        labels={f"{LABEL}.test": server},
    )
    with pytest.raises(PlatformError) as raised:
        dyno_network(engine, name)
    message = raised.value.message
    assert f"docker network rm {name}" in message and bridge_interface(name) in message
    holder.remove(force=True)

    assert dyno_network(engine, name) == name
    made = engine.networks.get(name)
    assert made.id != old.id and made.attrs["Options"][BRIDGE_NAME] == bridge_interface(name)
    assert bridge_interface(name) in interfaces()


def test_servers_making_the_pruned_bridge_at_once_all_get_it(
    engine: docker.DockerClient, server: str
) -> None:
    """After a prune, builds and one-offs of one server (or two servers) make the network
    at the same moment: one is made, and every caller gets it (Docker 20.10 refuses the
    later ones with "networks have same bridge name", not "already exists")."""
    name = server_network(server)
    for _ in range(5):
        with contextlib.suppress(docker.errors.NotFound):
            engine.networks.get(name).remove()
        start = threading.Barrier(4)
        with ThreadPoolExecutor(4) as pool:
            made = list(pool.map(partial(make_at, start, engine), [name] * 4))
        assert made == [name] * 4
        found = engine.networks.list(names=[name])
        assert [n.name for n in found] == [name]  # one network, not one per caller
        options = engine.networks.get(name).attrs
        assert options["Options"][BRIDGE_NAME] == bridge_interface(name)
        assert options["EnableIPv6"] is False


def make_at(start: threading.Barrier, engine: docker.DockerClient, name: str) -> str:
    start.wait(timeout=30)
    return dyno_network(engine, name)
