"""The Docker engine, reached through the docker SDK; its failures as errors that say what
to do. Blocking calls: the asyncio shells run them in threads."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from dataclasses import dataclass

import docker
import docker.errors
from docker import DockerClient
from docker.models.networks import Network

from dynos.core.containers import BRIDGE_PREFIX, NETWORK
from dynos.errors import PlatformError, UserError

ENGINE_TIMEOUT = 300  # seconds the engine has to answer a call (a commit of a large slug)


class EngineUnavailable(UserError):
    """No Docker engine answers: not installed, not running, or not ours to use."""

    id = "engine_unavailable"
    status = 503


class StackImageMissing(UserError):
    id = "stack_image_missing"
    status = 503


def connect() -> DockerClient:
    """A client of the local engine (DOCKER_HOST, else its socket), once it answered a ping;
    EngineUnavailable saying what is wrong otherwise."""
    if shutil.which("dockerd") is None and shutil.which("docker") is None:
        raise EngineUnavailable(
            "Docker is not installed: install it (apt-get install docker.io) and start the "
            "engine (dockerd), or run the server with --backend local."
        )
    try:
        client = docker.from_env(timeout=ENGINE_TIMEOUT)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(
            f"The Docker engine is not running or cannot be reached ({_reason(exc)}): start "
            "it (dockerd, or systemctl start docker), or run the server with --backend local."
        ) from None
    return client


def require_image(client: DockerClient, image: str) -> None:
    """StackImageMissing unless the engine has ``image``."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise StackImageMissing(
            f"The stack image {image} is not on the Docker engine: make it with "
            f"'dynos stack:build --image {image}' (or pass another --stack-image)."
        ) from None
    except docker.errors.APIError as exc:
        raise EngineUnavailable(
            f"The Docker engine failed to list {image}: {_reason(exc)}."
        ) from None


BRIDGE_NAME = "com.docker.network.bridge.name"  # the option naming a bridge's interface


def dyno_network(client: DockerClient, name: str = NETWORK) -> str:
    """The bridge network dynos and builds join, made at first use without inter-container
    traffic: a tenant's container reaches the internet, not another tenant's dyno. ``name``:
    the ``dynos`` bridge every docker backend server on this engine shares, or a swarm
    server's own (:func:`server_network`), whose interface is always
    :func:`bridge_interface`'s name: made again after a prune, it is still the one its
    fence names. One of those left by an older dynos under the engine's own name is made
    again (PlatformError, saying what to do, while containers still use it)."""
    interface = bridge_interface(name)
    try:
        found = client.networks.get(name)
        options = found.attrs.get("Options") or {}
        if interface is None or options.get(BRIDGE_NAME) == interface:
            return name
        _remove_unnamed(found, name, interface)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise PlatformError(f"Could not read the {name} network: {_reason(exc)}") from None
    options = {"com.docker.network.bridge.enable_icc": "false"}
    if interface is not None:
        options[BRIDGE_NAME] = interface
    try:
        client.networks.create(
            name,
            driver="bridge",
            options=options,
            labels={"io.dynos.network": name},
            check_duplicate=True,  # two servers' creates at once: one network, not two
            enable_ipv6=False,  # the firewall fences IPv4 only; never a daemon default's v6
        )
    except docker.errors.APIError as exc:
        # Another server (or build) made it meanwhile: "already exists", or on Docker 20.10
        # "networks have same bridge name" when the name was checked before it was there.
        if not _made_meanwhile(client, name, interface):
            raise PlatformError(f"Could not make the {name} network: {_reason(exc)}") from None
    return name


def _made_meanwhile(client: DockerClient, name: str, interface: str | None) -> bool:
    """Whether ``name`` is there now, as :func:`dyno_network` makes it (its interface).
    Asked a few times over a second: the engine refuses a second create ("same bridge
    name") as soon as the first has claimed the interface, a moment before the first
    network answers to its name."""
    for attempt in range(MEANWHILE_TRIES):
        time.sleep(MEANWHILE_PAUSE * attempt)  # none before the first look
        try:
            options = client.networks.get(name).attrs.get("Options") or {}
        except docker.errors.NotFound:
            continue
        except docker.errors.DockerException:
            return False
        return interface is None or options.get(BRIDGE_NAME) == interface
    return False


MEANWHILE_TRIES = 7  # pauses of 0.05 s to 0.3 s between the looks: about a second in all
MEANWHILE_PAUSE = 0.05


def _remove_unnamed(network: Network, name: str, interface: str) -> None:
    try:
        network.remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise PlatformError(
            f"The {name} network's bridge is not named {interface}, which the server's "
            f"firewall fences, and containers still use it ({_reason(exc)}): stop them "
            f"(docker ps --filter network={name}), remove it (docker network rm {name}) and "
            "start the server again, which makes it anew."
        ) from None


def bridge_interface(network: str) -> str | None:
    """The Linux interface of a server's own bridge (:func:`server_network`), fixed by the
    network's name (15 characters at most, as Linux allows): a re-made network has the name
    its fence matches. None for the shared ``dynos`` bridge, named by the engine."""
    if network == NETWORK:
        return None
    return BRIDGE_PREFIX + hashlib.sha256(network.encode()).hexdigest()[:10]  # 5 + 10 characters


def server_network(server: str) -> str:
    """A swarm server's own bridge for its one-offs and builds on the manager. Its fence
    (server_backend.confine_containers) drops their connections to private addresses; on
    the shared ``dynos`` bridge it dropped those of every other server's containers too (a
    docker backend's dynos lost their add-ons, on the bridge's gateway). Its interface:
    :func:`bridge_interface`."""
    return f"{NETWORK}-{server}"


def server_bridge(client: DockerClient, server: str) -> tuple[str, str]:
    """A swarm server's own network (:func:`server_network`), made if missing, and the
    interface its fence names: the one place both come from."""
    network = dyno_network(client, server_network(server))
    interface = bridge_interface(network)
    assert interface is not None  # a server's own network is never the shared one
    return network, interface


def remove_network(client: DockerClient, name: str) -> None:
    """Remove a server's own network at its close; one still in use stays (and is reused)."""
    with contextlib.suppress(docker.errors.DockerException):
        client.networks.get(name).remove()


@dataclass(frozen=True)
class Gateway:
    """Where the containers on the dynos network reach this machine: the bridge's own
    address, the subnet behind it and the bridge's interface on the host."""

    address: str
    subnet: str
    interface: str


def network_gateway(client: DockerClient, network: str = NETWORK) -> Gateway:
    """The gateway of ``network`` (made by ``dyno_network``), as the engine reports it."""
    try:
        attrs = client.networks.get(network).attrs
    except docker.errors.DockerException as exc:
        raise PlatformError(f"Could not read the {network} network: {_reason(exc)}") from None
    config = next(
        (c for c in attrs.get("IPAM", {}).get("Config") or [] if ":" not in c.get("Subnet", ":")),
        None,
    )
    if config is None or not config.get("Gateway"):
        raise PlatformError(
            f"The {network} network has no IPv4 gateway: remove it (docker network rm "
            f"{network}) and start the server again, which makes it anew."
        )
    options = attrs.get("Options") or {}
    interface = options.get("com.docker.network.bridge.name") or f"br-{attrs['Id'][:12]}"
    return Gateway(str(config["Gateway"]).split("/")[0], str(config["Subnet"]), interface)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
