"""The docker backend against the real engine, past a ``docker network prune``: the network
its containers join is made by the server at its start; pruned while no container used it,
the next one-off makes it again instead of failing "network not found" until a build.

Needs a running engine and the stack image.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from dynos.backends.base import DynoSpec
from dynos.backends.docker import DockerBackend
from dynos.backends.engine import bridge_interface
from dynos.core.containers import DEFAULT_STACK_IMAGE
from dynos.core.sizes import DEFAULT_SIZE
from tests.integration.conftest import remove_app_images

pytestmark = pytest.mark.anyio


class Recorder:
    """The backend's events, as the platform would receive them."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.exits: dict[str, asyncio.Event] = {}
        self.statuses: dict[str, int] = {}

    def dyno_output(self, key: str, line: str) -> None:
        self.lines.setdefault(key, []).append(line)

    def dyno_up(self, key: str) -> None:
        pass  # a one-off has no port to be up on

    def dyno_exited(self, key: str, status: int) -> None:
        self.statuses[key] = status
        self.exits.setdefault(key, asyncio.Event()).set()

    def dyno_boot_timeout(self, key: str) -> None:
        raise AssertionError(f"{key} timed out booting")

    def dyno_oom_killed(self, key: str) -> None:
        raise AssertionError(f"{key} was killed for its memory")


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


async def test_a_one_off_after_its_network_was_pruned_makes_it_again(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    test = uuid.uuid4().hex[:12]
    network = f"dynos-test-{test}"  # this test's own bridge, not the shared dynos one
    app_id = f"app-{test}"
    slug = tmp_path / "slugs" / f"slug-{test}"
    slug.mkdir(parents=True)
    (slug / "hello.txt").write_text("hello from the slug\n")
    events = Recorder()
    backend = DockerBackend(
        events, engine, stack_image=DEFAULT_STACK_IMAGE, home=tmp_path, network=network
    )

    async def one_off(number: int) -> list[str]:
        key = f"{app_id}/run.{number}/{number}"
        events.exits[key] = asyncio.Event()
        spec = DynoSpec(
            key=key,
            app_name=f"pruned-{test}",
            name=f"run.{number}",
            command="cat hello.txt",
            cwd=slug,
            env={},
            port=None,
            size=DEFAULT_SIZE,
            app_id=app_id,
        )
        await backend.start(spec)
        await asyncio.wait_for(events.exits[key].wait(), 120)
        assert events.statuses[key] == 0, events.lines.get(key)
        return events.lines.get(key, [])

    try:
        assert await one_off(1) == ["hello from the slug"]

        # An operator prunes it while nothing uses it (as `docker network prune` does).
        engine.networks.get(network).remove()
        with pytest.raises(docker.errors.NotFound):
            engine.networks.get(network)

        assert await one_off(2) == ["hello from the slug"]
        made = engine.networks.get(network).attrs
        assert made["Options"]["com.docker.network.bridge.name"] == bridge_interface(network)
    finally:
        await backend.close(2)  # removes this network too (not the shared one)
        remove_app_images(engine, [app_id])
