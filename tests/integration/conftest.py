"""Fixtures of the integration tests: a real `dynos server` per test (dynos.testing.harness),
or one per module where its tests each use apps of their own and look only at them.

A module shares one server by overriding ``server`` (or its own server fixture) with a
module-scoped ``started`` server and a per-test ``each_test`` wrapper, which checks the server
still runs and, after the test, scales every app it has to zero and stops its one-off dynos:
what one test started does not run on, and load the machine, under the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, dyno_states, start_server, tarball, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

__all__ = [
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
