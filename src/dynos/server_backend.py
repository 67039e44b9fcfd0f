"""`dynos server --backend docker`: the docker backend and its builder, wired once the
engine answers and has the stack image (else a one-line error, and the server does not
start). The local backend's wiring stays in server.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dynos.backends.base import Backend, DynoEvents
from dynos.backends.docker import DockerBackend
from dynos.backends.engine import NETWORK, connect, require_image
from dynos.config import HomePaths, ServerConfig
from dynos.platform.container_build import ContainerBuilder

DOCKER_ISOLATION = (
    "each dyno is a container of its release's image, as an unprivileged user, without "
    "capabilities or new privileges"
)
DOCKER_NETWORK = (
    f"dynos on the '{NETWORK}' bridge, which forbids traffic between containers; web dyno "
    "ports published on 127.0.0.1 for the router"
)


@dataclass(frozen=True)
class DockerWiring:
    backend: Callable[[DynoEvents], Backend]
    builder: ContainerBuilder


def docker_wiring(config: ServerConfig, paths: HomePaths) -> DockerWiring:
    """Raises EngineUnavailable or StackImageMissing (UserErrors) before anything starts."""
    client = connect()
    require_image(client, config.stack_image)

    def backend(events: DynoEvents) -> DockerBackend:
        return DockerBackend(
            events,
            client,
            stack_image=config.stack_image,
            home=paths.home,
            boot_timeout=config.boot_timeout,
        )

    builder = ContainerBuilder(
        client,
        config.stack_image,
        paths.home / "build-cache",
        timeout=config.build_timeout,
    )
    return DockerWiring(backend, builder)
