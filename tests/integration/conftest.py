"""Fixtures of the integration tests: a real `dynos server` per test (dynos.testing.harness),
or one per module where its tests each use apps of their own and look only at them.

A module shares one server by overriding ``server`` (or its own server fixture) with a
module-scoped ``started`` server and a per-test ``each_test`` wrapper, which checks the server
still runs and, after the test, scales every app it has to zero and stops its one-off dynos:
what one test started does not run on, and load the machine, under the next.

The acceptance modules (lifecycle: R10, R12, R14/R15, crash back-off, H10, idling, sizes,
health checks) run on both backends: their module server is parametrized by ``BACKENDS``
and started by ``backend_server``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from dynos.core.containers import LABEL
from dynos.testing.harness import RunningServer, dyno_states, start_server, tarball, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BACKENDS = ("local", "docker")
DOCKER_OPTIONS = ("--backend", "docker")  # added to a module's own options

__all__ = [
    "BACKENDS",
    "EXAMPLES",
    "RunningServer",
    "dyno_states",
    "each_test",
    "start_server",
    "started",
    "tarball",
    "wait_for",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "home", "--stop-grace", "5")
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of the test's own where the module shares ``server``: for a test that stops
    its server or looks at everything the server runs."""
    yield from started(tmp_path / "home", "--stop-grace", "5")


def started(home: Path, *extra: str) -> Iterator[RunningServer]:
    """A server on ``home`` for as long as the fixture that yields from this lasts."""
    running = start_server(home, *extra)
    yield running
    if running.process.poll() is None:
        running.stop()


def each_test(shared: RunningServer) -> Iterator[RunningServer]:
    """One test's use of a module's server: it must still run, and is quiet again after."""
    assert shared.process.poll() is None, "an earlier test of this module stopped its server"
    yield shared
    with shared.api() as api:
        for app in api.get("/apps").json():
            name = app["name"]
            updates = [
                {"type": entry["type"], "quantity": 0}
                for entry in api.get(f"/apps/{name}/formation").json()
            ]
            if updates:
                api.patch(f"/apps/{name}/formation", json={"updates": updates})
            for dyno in api.get(f"/apps/{name}/dynos").json():
                if dyno["type"] == "run" and dyno["state"] != "complete":
                    api.post(f"/apps/{name}/dynos/{dyno['name']}/actions/stop")


def backend_server(home: Path, backend: str, *extra: str) -> Iterator[RunningServer]:
    """A server on ``home`` with ``backend``, for as long as the fixture lasts; a docker
    one's release images go with it (the engine outlives the test run)."""
    options = (*extra, *DOCKER_OPTIONS) if backend == "docker" else extra
    running = start_server(home, *options)
    yield running
    if backend != "docker":
        if running.process.poll() is None:
            running.stop()
        return
    with running.api() as api:
        app_ids = [app["id"] for app in api.get("/apps").json()]
    running.stop()
    engine = docker.from_env()
    remove_app_images(engine, app_ids)
    engine.close()


def remove_app_images(engine: docker.DockerClient, app_ids: list[str]) -> None:
    """The release and slug images of ``app_ids`` (release images first: a slug's image
    cannot go before the release images made on it)."""
    for image in app_images(engine, app_ids):
        engine.images.remove(str(image.id), force=True)


def app_images(engine: docker.DockerClient, app_ids: list[str]) -> list[Any]:
    """The images of ``app_ids``, in an order they can be removed in: release images first
    (a slug's image cannot go before the release images made on it, even by force)."""
    images = []
    for app_id in app_ids:
        found = engine.images.list(filters={"label": f"{LABEL}.app-id={app_id}"})
        images += sorted(found, key=lambda i: f"{LABEL}.release" not in i.labels)
    return images
