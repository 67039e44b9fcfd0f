"""`dynos server --backend docker|swarm`: the docker or swarm backend and its builder, wired
once the engine answers and has the stack image (and, for swarm, is a swarm's manager and
has a registry): else a one-line error, and the server does not start. The local backend's
wiring stays in server.py.

The docker SDK and the container backends are imported by the wiring functions, not here: a
local server (most of them, and most of the test suite's) never loads them (0.1 s of CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dynos.backends.base import Backend, DynoEvents
from dynos.backends.firewall import FirewallError, PortGuard
from dynos.backends.ports import EPHEMERAL_FILE, parse_ephemeral
from dynos.config import HomePaths, ServerConfig
from dynos.core.containers import NETWORK, SERVER_BRIDGES, server_id
from dynos.core.swarm_guard import (
    ADDON_PORTS,
    GATEWAY_BRIDGE,
    RESOLV_FILES,
    blocked_destinations,
    fence_resolvers,
    host_resolvers,
)
from dynos.errors import NotSwarmManager
from dynos.platform.pythons import HostPythons

log = logging.getLogger("dynos")

if TYPE_CHECKING:
    from dynos.backends.docker import DockerBackend
    from dynos.backends.engine import Gateway
    from dynos.backends.swarm import SwarmBackend
    from dynos.platform.container_build import ContainerBuilder

DOCKER_ISOLATION = (
    "each dyno is a container of its release's image, as an unprivileged user, without "
    "capabilities or new privileges"
)
DOCKER_NETWORK = (
    f"dynos on the '{NETWORK}' bridge, which forbids traffic between containers; web dyno "
    "ports published on 127.0.0.1 for the router; add-on servers also listen on the bridge's "
    "gateway"
)
SWARM_ISOLATION = (
    "each dyno is a task of its type's swarm service, a container of its release's image, as "
    "an unprivileged user, without capabilities"
)
SWARM_NETWORK = (
    "each app's tasks on an overlay network of its own; web tasks publish their port in host "
    "mode on their node's address (no routing mesh), which the guard on every node opens to "
    "the router's address only; the router connects to each task's node and port"
)

# What the server's log says of each container backend: (isolation, network).
CONTAINER_NOTES = {
    "docker": (DOCKER_ISOLATION, DOCKER_NETWORK),
    "swarm": (SWARM_ISOLATION, SWARM_NETWORK),
}


@dataclass(frozen=True)
class AddonReach:
    """Where container dynos reach the add-on servers, besides the server's loopback."""

    address: str  # also listened on: the docker bridge's gateway, or a swarm's router address
    network: str  # let into Postgres, for the apps' roles only (pg_hba)
    ports: range | None = None  # where their ports must be (None: anywhere free)


@dataclass(frozen=True)
class Fence:
    """Swarm: the manager's bridge (its one-offs and builds), where it may not connect, the
    resolvers its port 53 may reach; the router's address and the nodes' (add-ons)."""

    interface: str
    destinations: list[str]
    resolvers: list[str]
    router: str
    nodes: list[str]


@dataclass(frozen=True)
class DockerWiring:
    backend: Callable[[DynoEvents], Backend]
    builder: ContainerBuilder
    # Where containers reach the add-on servers (docker: the bridge's gateway).
    gateway: Gateway | None = None
    addons: AddonReach | None = None
    fence: Fence | None = None  # swarm
    # Swarm: told the nodes' addresses whenever they change (confine_containers adds one).
    node_watchers: list[Callable[[list[str]], None]] = field(default_factory=list)


def docker_wiring(config: ServerConfig, paths: HomePaths) -> DockerWiring:
    """Raises EngineUnavailable or StackImageMissing (UserErrors) before anything starts."""
    from dynos.backends.docker import DockerBackend
    from dynos.backends.engine import connect, dyno_network, network_gateway, require_image
    from dynos.platform.container_build import ContainerBuilder

    client = connect()
    require_image(client, config.stack_image)
    gateway = network_gateway(client, dyno_network(client))

    def backend(events: DynoEvents) -> DockerBackend:
        return DockerBackend(
            events,
            client,
            stack_image=config.stack_image,
            home=paths.home,
            boot_timeout=config.boot_timeout,
            addon_host=gateway.address,
        )

    builder = ContainerBuilder(
        client,
        config.stack_image,
        paths.home / "build-cache",
        host_pythons(paths),
        server=server_id(str(paths.home)),
        timeout=config.build_timeout,
    )
    return DockerWiring(backend, builder, gateway, AddonReach(gateway.address, gateway.subnet))


def host_pythons(paths: HomePaths) -> HostPythons:
    """The server's interpreters, which container builds may copy into a slug: found as the
    local build finds them, copied (relocated) into ``<home>/pythons`` as it copies them."""
    return HostPythons(paths.home / "pythons", shared=True, uv=None)


def confine_containers(ports: PortGuard | None, wiring: DockerWiring) -> str | None:
    """The firewall's part of a container backend: the gateway confined (docker) or the
    manager's bridge fenced off the swarm (swarm); the server's log line of it. Raises
    FirewallError where a swarm's fence cannot be made: a tenant's one-off would reach
    other apps' dynos."""
    if wiring.gateway is not None:
        return confine_gateway(ports, wiring.gateway)
    fence = wiring.fence
    if fence is None:
        return None
    if ports is None:
        raise FirewallError(
            "--backend swarm needs root and nftables here: one-off dynos on the manager would "
            "otherwise reach other apps' dynos on the nodes. Run the server as root."
        )
    # The add-on servers' door first: the fence would drop the one-offs' way to it.
    ports.swarm_nodes(fence.nodes)
    ports.open_addons(fence.router, ADDON_PORTS, [GATEWAY_BRIDGE, SERVER_BRIDGES])
    ports.fence(fence.interface, fence.destinations, fence.resolvers)
    # A node that joins later is let in to the add-ons, and fenced off, as the guard learns
    # of it: before any dyno can be placed there (the guard labels the node after).
    wiring.node_watchers.append(ports.nodes_changed)
    names = ", ".join(fence.resolvers) or "none"
    span = f"{ADDON_PORTS.start}-{ADDON_PORTS.stop - 1}"
    return (
        f"one-offs and builds on {fence.interface} reach no private or node address but port "
        f"53 of the host's resolvers ({names}) and the add-on servers on {fence.router} (ports "
        f"{span}, which only the swarm's nodes and tasks reach) (table {ports.rules.table})"
    )


def confine_gateway(ports: PortGuard | None, gateway: Gateway) -> str:
    """Let only loopback and the dynos bridge reach the bridge's gateway, where add-on
    servers listen for container dynos; the server's log line of it."""
    where = f"add-on servers on {gateway.address} ({NETWORK} bridge {gateway.interface})"
    if ports is None:
        return f"{where} reachable from other docker networks too (closing them needs root)"
    try:
        ports.confine(gateway.address, gateway.interface)
    except FirewallError as exc:
        return f"{where} reachable from other docker networks too: {exc.message}"
    return f"{where} reachable only from that bridge and loopback (table {ports.rules.table})"


def read_resolv_files() -> list[str | None]:
    """This machine's RESOLV_FILES (None: unreadable), where the engine finds the resolvers
    it forwards its containers' lookups to."""
    texts: list[str | None] = []
    for path in RESOLV_FILES:
        try:
            texts.append(Path(path).read_text(errors="replace"))
        except OSError:
            texts.append(None)
    return texts


def ephemeral_overlap() -> bool:
    """Whether the kernel's ephemeral ports reach into ADDON_PORTS."""
    try:
        low, high = parse_ephemeral(EPHEMERAL_FILE.read_text())
    except OSError:
        return False
    return low < ADDON_PORTS.stop and high >= ADDON_PORTS.start


def swarm_wiring(config: ServerConfig, paths: HomePaths) -> DockerWiring:
    """Raises EngineUnavailable, StackImageMissing, NotSwarmManager or RegistryUnreachable
    (UserErrors) before anything starts."""
    from dynos.backends.docker import DockerBackend
    from dynos.backends.engine import connect, require_image, server_bridge
    from dynos.backends.registry import DEFAULT_REGISTRY, PlatformRegistry, check
    from dynos.backends.swarm import SwarmBackend
    from dynos.backends.swarm_engine import router_address
    from dynos.platform.container_build import ContainerBuilder

    client = connect()
    require_image(client, config.stack_image)
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        state = swarm.get("LocalNodeState") or "unknown"
        role = "a worker" if state == "active" else f"in swarm state '{state}'"
        raise NotSwarmManager(
            f"This Docker engine is not a swarm manager (it is {role}): run the server on a "
            "manager, make this engine one (docker swarm init --advertise-addr ADDRESS; "
            "scripts/swarm-lab up makes a 2-node swarm on this machine), or use --backend docker."
        )
    router = router_address(client)  # the guard lets the router in by it: the nodes see it
    # The server's own bridge on the manager, for its one-offs and builds, fenced off the
    # swarm (confine_containers): not the shared one, whose other servers' dynos it would cut
    # off their add-ons. Its interface has a fixed name: made again after a prune (by the
    # next build or one-off), it is still the one fenced.
    network, interface = server_bridge(client, server_id(str(paths.home)))
    nodes = [str((n.get("Status") or {}).get("Addr") or "") for n in client.api.nodes()]
    resolvers = fence_resolvers(host_resolvers(read_resolv_files()), router, nodes)
    known = [node for node in nodes if node]
    fence = Fence(interface, blocked_destinations(router, nodes), resolvers, router, known)
    watchers: list[Callable[[list[str]], None]] = []

    def nodes_changed(addresses: list[str]) -> None:
        for watcher in watchers:
            watcher(addresses)

    own = None
    if config.registry is None:
        own = PlatformRegistry(paths.home / "registry", DEFAULT_REGISTRY)
        own.start()
        address = own.address
    else:
        address = config.registry
        check(address)

    def backend(events: DynoEvents) -> SwarmBackend:
        return SwarmBackend(
            events,
            client,
            stack_image=config.stack_image,
            home=paths.home,
            registry_address=address,
            own_registry=own,
            boot_timeout=config.boot_timeout,
            stop_grace=config.stop_grace,
            one_offs=DockerBackend(
                events,
                client,
                stack_image=config.stack_image,
                home=paths.home,
                boot_timeout=config.boot_timeout,
                network=network,
                addon_host=router,
            ),
            on_nodes=nodes_changed,
        )

    builder = ContainerBuilder(
        client,
        config.stack_image,
        paths.home / "build-cache",
        host_pythons(paths),
        server=server_id(str(paths.home)),
        timeout=config.build_timeout,
        network=network,
    )
    if ephemeral_overlap():
        log.warning(
            "this machine's ephemeral ports (%s) reach into the add-on ports %d-%d, which every "
            "swarm task may connect to on %s: a listener the kernel gives such a port there "
            "would be open to them (raise net.ipv4.ip_local_port_range's start above %d)",
            EPHEMERAL_FILE.read_text().strip(),
            ADDON_PORTS.start,
            ADDON_PORTS.stop - 1,
            router,
            ADDON_PORTS.stop - 1,
        )
    # Postgres lets any address in for the apps' roles (SSL, a SCRAM password): the firewall
    # (open_addons) says who reaches its port, the nodes among them as they join.
    addons = AddonReach(router, "0.0.0.0/0", ADDON_PORTS)
    return DockerWiring(backend, builder, addons=addons, fence=fence, node_watchers=watchers)
