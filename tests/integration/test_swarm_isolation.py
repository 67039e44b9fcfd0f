"""Tenants on the swarm: a dyno is reached through the router only, apps reach no other
app's dyno, and no dyno reaches the platform (its registry, its router's port).

On the lab's two nodes (scripts/swarm-lab up; .ci/run starts it), with real containers: app
beta's tasks on both nodes try app alpha's tasks on both, through each node's address and
published port; a plain process in the worker's network namespace plays another machine.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import docker
import pytest

from dynos.backends.swarm_engine import read_cluster
from dynos.core.containers import LABEL, server_id
from dynos.core.swarm_guard import guard_label, guard_service_name
from dynos.testing.harness import RunningServer, start_server, wait_for_dynos
from tests.integration.conftest import wait_for
from tests.integration.test_swarm_backend import (
    LAB_WORKER_SOCKET,
    QUICK,
    SWARM_APP,
    answers,
    engine,
    services,
    stop_and_clean,
)

__all__ = ["engine"]  # the fixture, shared with the backend's tests
# The first start pushes the stack image (the guard's) to the registry: 500 MB, once.
pytestmark = pytest.mark.timeout(600)
LAB_NETNS = "/run/netns/dynos-lab"
MANAGER = "10.77.0.1"  # the lab's manager, where the server's router runs
LAB_REGISTRY_ON_MANAGER = (MANAGER, 5000)
PROBE = """
import socket, sys
try:
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    s = socket.socket(family)
    s.settimeout(3)
    s.connect(socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), family)[0][4])
    print("connected")
except OSError as e:
    print("failed:", type(e).__name__)
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("swarmiso") / "home", *QUICK)
    yield running
    stop_and_clean(engine, running)


def web_tasks(engine: docker.DockerClient, server: RunningServer, app: str) -> list[dict]:
    """``app``'s running web tasks: node id, node address, published port, container id."""
    service = services(engine, server, app)["web"]
    _, nodes = read_cluster(engine.api, [])
    found = []
    for task in engine.api.tasks(filters={"service": service["ID"], "desired-state": "running"}):
        ports = (task["Status"].get("PortStatus") or {}).get("Ports") or []
        found.append(
            {
                "node": task["NodeID"],
                "address": nodes[task["NodeID"]][1],
                "port": ports[0]["PublishedPort"],
                "container": task["Status"]["ContainerStatus"]["ContainerID"],
            }
        )
    return found


def on_node(
    engine: docker.DockerClient, worker: docker.DockerClient, task: dict
) -> docker.DockerClient:
    manager = engine.info()["Swarm"]["NodeID"]
    return engine if task["node"] == manager else worker


def probe_from(client: docker.DockerClient, container: str, host: str, port: int) -> str:
    result = client.containers.get(container).exec_run(["python3", "-c", PROBE, host, str(port)])
    return result.output.decode().strip()


def probe_from_other_host(host: str, port: int) -> str:
    argv = ["nsenter", f"--net={LAB_NETNS}", "python3", "-c", PROBE, host, str(port)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def manager_link_local() -> str:
    """The manager's IPv6 link-local address on the lab's veth, as the worker's side names
    it: the engine's userland proxy publishes every port there too."""
    shown = subprocess.run(
        ["ip", "-6", "-o", "addr", "show", "dev", "dynoslab0", "scope", "link"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return shown.split()[3].split("/")[0] + "%dynoslab1"


def test_a_dyno_is_reached_through_the_router_only_and_reaches_no_tenant_nor_platform(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    worker = docker.DockerClient(base_url=LAB_WORKER_SOCKET)
    for app in ("alpha", "beta"):
        server.create_app(app)
        server.deploy(app, SWARM_APP)
        server.scale(app, web=2)
    for app in ("alpha", "beta"):
        wait_for_dynos(server, app, {"web.1": "up", "web.2": "up"}, 240)
    alpha, beta = web_tasks(engine, server, "alpha"), web_tasks(engine, server, "beta")
    manager_id = engine.info()["Swarm"]["NodeID"]
    assert len({t["node"] for t in alpha}) == 2 and len({t["node"] for t in beta}) == 2
    # Through the router: both of alpha's dynos answer.
    assert {a["dyno"] for a in answers(server, "alpha")} == {"web.1", "web.2"}
    # Each app on its own overlay network; the guard runs on both nodes, which are labelled.
    name = server_id(str(server.home))
    networks = {n["Name"] for n in engine.api.networks(filters={"label": f"{LABEL}.server={name}"})}
    assert {n for n in networks if n.endswith(("-alpha-net", "-beta-net"))} == networks
    assert len(networks) == 2
    guard = engine.api.tasks(
        filters={"service": guard_service_name(name), "desired-state": "running"}
    )
    assert len({t["NodeID"] for t in guard}) == 2
    for node in engine.api.nodes():
        assert node["Spec"]["Labels"].get(guard_label(name)) == "on"

    # Beta's containers, on both nodes, try alpha's dynos on both nodes: node address and
    # published port (the same node's too: through the engine's NAT, back to its bridge).
    for source in beta:
        client = on_node(engine, worker, source)
        for target in alpha:
            said = probe_from(client, source["container"], target["address"], target["port"])
            assert said.startswith("failed"), (source, target, said)
    # Another machine (a process in the worker's namespace) reaches no dyno on the manager.
    on_manager = [t for t in alpha if t["node"] == manager_id]
    for address in (on_manager[0]["address"], manager_link_local()):
        said = probe_from_other_host(address, on_manager[0]["port"])
        assert said.startswith("failed"), (address, said)
    # A port of the platform on the manager's every address (as an API or router listening
    # on 0.0.0.0 would be). The control: the other machine reaches it.
    with socket.create_server(("0.0.0.0", 0), backlog=64) as platform:
        platform_port = platform.getsockname()[1]
        assert probe_from_other_host(MANAGER, platform_port) == "connected"
        # No dyno reaches the platform: that port, nor the registry (from the worker, where
        # the engine reaches it for its pulls).
        for source in beta:
            client = on_node(engine, worker, source)
            for host, port in (LAB_REGISTRY_ON_MANAGER, (MANAGER, platform_port)):
                said = probe_from(client, source["container"], host, port)
                assert said.startswith("failed"), (source, host, port, said)
    # Still through the router, after all of it.
    assert {a["dyno"] for a in answers(server, "alpha")} == {"web.1", "web.2"}
    worker.close()


def test_the_guard_and_the_networks_go_with_the_server(
    tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient
) -> None:
    running = start_server(tmp_path_factory.mktemp("swarmiso-stop") / "home", *QUICK)
    name = server_id(str(running.home))
    try:
        running.create_app("brief")
        running.deploy("brief", SWARM_APP)
        running.scale("brief", web=1)
        wait_for_dynos(running, "brief", {"web.1": "up"}, 240)
        assert engine.api.services(filters={"name": guard_service_name(name)})
    finally:
        stop_and_clean(engine, running)
    assert not engine.api.services(filters={"name": guard_service_name(name)})
    labels = {"label": f"{LABEL}.server={name}"}
    wait_for(lambda: not engine.api.networks(filters=labels), 60, "the app networks removed")
    forward = f"DYNOS-{name[:8].upper()}-FWD"
    wait_for(
        lambda: (
            forward
            not in subprocess.run(
                ["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True
            ).stdout
        ),
        30,
        "the guard's rules gone from the manager",
    )
