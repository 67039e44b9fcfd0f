"""Add-ons reached from swarm dynos (`--backend swarm`): a real Redis and a real Postgres
add-on, on the router's address, used by a real app (redis-py, psycopg) from tasks on both
of the lab's nodes and from a one-off on the manager.

Needs `scripts/swarm-lab up`, redis-server, PostgreSQL and PyPI for the app's build: these
tests fail, never skip, without them, as CI must run them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dynos.backends.swarm_engine import router_address
from dynos.core.swarm_guard import ADDON_PORTS
from dynos.testing.harness import RunningServer, start_server, wait_for_dynos
from tests.integration.conftest import wait_for
from tests.integration.test_swarm_backend import (
    LAB_WORKER_SOCKET,
    QUICK,
    engine,  # noqa: F401 (a fixture: the lab's manager, or a failure saying to start it)
    on_node,
    probe_from,
    ps_json,
    services,
    stop_and_clean,
)

pytestmark = pytest.mark.timeout(600)
ADDONS_APP = Path(__file__).parent / "apps" / "addons"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    engine: docker.DockerClient,  # noqa: F811
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("swarm-addons") / "home", *QUICK)
    yield running
    stop_and_clean(engine, running)


def lines_of(server: RunningServer, app: str, dyno: str) -> str:
    return "\n".join(line for line in server.logs(app).splitlines() if f"[{dyno}]" in line)


def test_dynos_on_both_nodes_and_one_offs_use_their_apps_add_ons_on_the_router_s_address(
    server: RunningServer,
    engine: docker.DockerClient,  # noqa: F811
) -> None:
    router = router_address(engine)
    for app in ("keeper", "other"):
        server.create_app(app)
        output, last = server.deploy_output(app, ADDONS_APP)
        assert last.get("status") != "failed", output
        server.cli("addons:create", "heroku-postgresql", "-a", app)
    server.cli("addons:create", "redis", "-a", "keeper")
    redis_url = server.cli("config:get", "REDIS_URL", "-a", "keeper").stdout.strip()
    redis_port = int(redis_url.rsplit(":", 1)[1])
    assert redis_port in ADDON_PORTS  # the range every node's guard lets out to the router
    shown = server.cli("config:get", "DATABASE_URL", "-a", "keeper").stdout.strip()
    assert "@127.0.0.1:" in shown  # the server's own view, as on Heroku's machine
    database = shown.rsplit("/", 1)[1]

    # A task on each node: its URLs name the router's address, and both add-ons answer.
    server.scale("keeper", checker=2)
    wait_for_dynos(server, "keeper", {"checker.1": "up", "checker.2": "up"}, 180)
    dynos = ps_json(server, "keeper")
    assert len({dynos["checker.1"]["node"], dynos["checker.2"]["node"]}) == 2, dynos
    for dyno in ("checker.1", "checker.2"):
        wait_for(lambda d=dyno: "postgres said:" in lines_of(server, "keeper", d), 120, dyno)
        said = lines_of(server, "keeper", dyno)
        assert f"urls: {router}:{redis_port} {router}:" in said, said
        assert f"redis said: {dyno}" in said and "ssl=True" in said, said
    # From each node's task, the router's address opens the add-on range only: a listener
    # there on another port (as the API or the registry could be) is out of reach.
    worker = docker.DockerClient(base_url=LAB_WORKER_SOCKET)
    with socket.create_server((router, 0)) as other, contextlib.closing(worker):
        for task in checker_tasks(engine, server):
            client = on_node(engine, worker, task)
            reached = probe_from(client, task["container"], router, redis_port)
            assert reached == "connected", (task, reached)
            elsewhere = probe_from(client, task["container"], router, other.getsockname()[1])
            assert elsewhere.startswith("failed"), (task, elsewhere)

    # A one-off on the manager's own bridge (as the release phase runs) reaches them too.
    said = server.cli("run:detached", "-a", "keeper", "python check.py").stdout
    one_off = "run." + said.split("run.")[1].split()[0].rstrip(".")
    wait_for(lambda: "Process exited" in lines_of(server, "keeper", one_off), 120, one_off)
    said = lines_of(server, "keeper", one_off)
    assert "redis said: run." in said and "postgres said: 3 rows, ssl=True" in said, said

    # Another app's dyno, with its own valid credentials, is refused the keeper's database.
    said = server.cli("run:detached", "-a", "other", f"python check.py steal {database}").stdout
    thief = "run." + said.split("run.")[1].split()[0].rstrip(".")
    wait_for(lambda: "Process exited" in lines_of(server, "other", thief), 120, thief)
    stolen = lines_of(server, "other", thief)
    assert "refused:" in stolen and "stole" not in stolen, stolen
    assert f"the add-on servers on {router}" in server.log_tail(20000)


def checker_tasks(
    engine: docker.DockerClient,  # noqa: F811
    server: RunningServer,
) -> list[dict[str, str]]:
    """The keeper's running checker tasks: node id and container id."""
    service = services(engine, server, "keeper")["checker"]
    found = []
    for task in engine.api.tasks(filters={"service": service["ID"], "desired-state": "running"}):
        found.append(
            {"node": task["NodeID"], "container": task["Status"]["ContainerStatus"]["ContainerID"]}
        )
    return found
