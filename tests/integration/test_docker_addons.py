"""Add-ons reached from container dynos (`--backend docker`): a real Redis and a real
Postgres add-on, a real app using redis-py and psycopg in its container.

Needs a running engine, the stack image, redis-server and PostgreSQL, and PyPI for the app's
build: these tests fail, never skip, without them, as CI must run them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dynos.backends.engine import NETWORK, network_gateway
from dynos.core.containers import DEFAULT_STACK_IMAGE, LABEL
from dynos.testing.harness import RunningServer, start_server
from tests.integration.conftest import wait_for
from tests.integration.test_docker_backend import QUICK, logs_have, remove_images

pytestmark = pytest.mark.integration
ADDONS_APP = Path(__file__).parent / "apps" / "addons"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("docker-addons") / "home", *QUICK)
    yield running
    remove_images(engine, running)


def deploy_with_addons(server: RunningServer) -> None:
    """The add-ons app deployed as "keeper" and as "other", each with a database of its own;
    a Redis for "keeper" alone."""
    for app in ("keeper", "other"):
        server.create_app(app)
        output, last = server.deploy_output(app, ADDONS_APP)
        assert last.get("status") != "failed", output
        server.cli("addons:create", "heroku-postgresql", "-a", app)
    server.cli("addons:create", "redis", "-a", "keeper")


def run_check(server: RunningServer, app: str, *args: str) -> str:
    """`run:detached python check.py ARGS` in ``app``; its dyno's lines once it exited."""
    said = server.cli("run:detached", "-a", app, "python check.py " + " ".join(args)).stdout
    dyno = "run." + said.split("run.")[1].split()[0].rstrip(".")
    wait_for(lambda: logs_have(server, app, f"dynos[{dyno}]: Process exited"), 60, dyno)
    return "\n".join(line for line in server.logs(app).splitlines() if f"[{dyno}]" in line)


@pytest.mark.timeout(300)  # uv downloads psycopg and redis into two builds' containers
def test_a_container_dyno_uses_its_apps_redis_and_postgres_and_no_other_apps(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    gateway = network_gateway(engine, NETWORK)
    deploy_with_addons(server)
    # What config:get shows is the server's own view, as on Heroku's machine: loopback.
    shown = server.cli("config:get", "DATABASE_URL", "-a", "keeper").stdout.strip()
    assert "@127.0.0.1:" in shown

    said = run_check(server, "keeper")
    # The dyno's environment names the bridge's gateway, at the same ports.
    redis_port = server.cli("config:get", "REDIS_URL", "-a", "keeper").stdout.strip()
    redis_port = redis_port.rsplit(":", 1)[1]
    database = shown.rsplit("/", 1)[1]
    assert f"urls: {gateway.address}:{redis_port} {gateway.address}:" in said, said
    assert "redis said: run." in said and "postgres said: 1 rows, ssl=True" in said, said

    # Another app's dyno, with its own valid credentials, is refused the keeper's database.
    stolen = run_check(server, "other", "steal", database)
    assert "refused:" in stolen and "stole" not in stolen, stolen


def test_the_add_on_gateway_is_closed_to_other_docker_networks(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    server.create_app("walled")
    server.cli("addons:create", "redis", "-a", "walled")
    url = server.cli("config:get", "REDIS_URL", "-a", "walled").stdout.strip()
    port = int(url.rsplit(":", 1)[1])
    gateway = network_gateway(engine, NETWORK)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(3)\n"
        f"try: s.connect(({gateway.address!r}, {port})); print('reached')\n"
        "except OSError as e: print('blocked', e)\n"
    )

    def attempt(network: str) -> str:
        # A container of this test's own, removed after: on the dynos bridge the add-on
        # answers, on docker's default bridge (another tenant's network) it does not.
        output = engine.containers.run(
            DEFAULT_STACK_IMAGE,
            ["python3", "-c", probe],
            network=network,
            labels={f"{LABEL}.test": "docker-addons"},
            remove=True,
        )
        return bytes(output).decode()

    assert attempt(NETWORK).startswith("reached")
    assert attempt("bridge").startswith("blocked")
    assert "reachable only from that bridge and loopback" in server.log_tail(20000)
