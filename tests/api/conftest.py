"""One real `dynos server` for the API tests that take ``server`` (test_contract, test_endpoints,
test_input), each module with apps of its own deployed on it: API tests read real answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dynos.testing.harness import RunningServer, start_server, wait_for_dynos

ENVECHO = Path(__file__).parents[1] / "integration" / "apps" / "envecho"
SETTLE_TIMEOUT = 120.0  # seconds for a deploy's or a restart's dynos to be up


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("api") / "home", "--stop-grace", "2")
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with server.api() as client:
        yield client


def deploy_envecho(server: RunningServer, api: httpx.Client, name: str) -> None:
    """Create ``name``, deploy the envecho app and wait for web.1 and worker.1 to be up."""
    assert api.post("/apps", json={"name": name}).status_code == 201
    server.deploy(name, ENVECHO)
    response = api.patch(
        f"/apps/{name}/formation", json={"updates": [{"type": "worker", "quantity": 1}]}
    )
    assert response.status_code == 200, response.text
    # Generous: the machine is shared (CI runs the swarm and docker modules beside this one),
    # and a timeout says what was last seen and the app's log.
    wait_for_dynos(server, name, {"web.1": "up", "worker.1": "up"}, SETTLE_TIMEOUT)
