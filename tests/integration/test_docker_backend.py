"""`dynos server --backend docker` on the machine's Docker engine: dynos as containers.

Needs a running engine and the stack image (`dynos stack:build`; .ci/run makes both): these
tests fail, never skip, without them, as CI must run them.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from dynos.core.containers import DEFAULT_STACK_IMAGE, LABEL, server_id
from dynos.testing.harness import RunningServer, start_server, wait_for_dynos
from tests.integration.conftest import EXAMPLES, each_test, remove_app_images, wait_for
from tests.integration.test_one_off import read_until, wait_exit

CONTAINER_APP = Path(__file__).parent / "apps" / "container"
QUICK = ("--backend", "docker", "--stop-grace", "2", "--crash-backoff", "2")
GIB = 1024**3


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    client.ping()  # no engine: fail here, saying so, rather than in every test
    yield client
    client.close()


def remove_images(engine: docker.DockerClient, server: RunningServer) -> None:
    """Stop ``server`` and remove its apps' release images: the engine outlives the test run
    (CI's runs share it), and so would they."""
    with server.api() as api:
        app_ids = [app["id"] for app in api.get("/apps").json()]
    server.stop()
    remove_app_images(engine, app_ids)


@pytest.fixture(scope="module")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("docker") / "home", *QUICK)
    yield running
    remove_images(engine, running)


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


def containers(engine: docker.DockerClient, server: RunningServer, app: str) -> dict[str, Any]:
    """The running dynos of ``app`` as the engine has them, by dyno name."""
    labels = [f"{LABEL}.server={server_id(str(server.home))}", f"{LABEL}.app={app}"]
    found = {}
    for sparse in engine.containers.list(sparse=True, filters={"label": labels}):
        try:  # one may be removed meanwhile (an exited dyno's)
            container = engine.containers.get(sparse.id)
        except docker.errors.NotFound:
            continue
        found[container.labels[f"{LABEL}.dyno"]] = container
    return found


def logs_have(server: RunningServer, app: str, *fragments: str) -> bool:
    text = server.logs(app)
    return all(fragment in text for fragment in fragments)


def test_the_hello_example_scales_and_serves_through_the_router(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    server.create_app("hello")
    server.deploy("hello", EXAMPLES / "hello")
    server.scale("hello", web=2, worker=1)
    wait_for_dynos(server, "hello", {"web.1": "up", "web.2": "up", "worker.1": "up"}, 120)
    seen = set()
    with server.router("hello") as router:
        for _ in range(20):
            answer = router.get("/")
            assert answer.status_code == 200
            seen.add(answer.text.strip())
    assert seen == {"Hello from web.1!", "Hello from web.2!"}
    wait_for(lambda: logs_have(server, "hello", "app[worker.1]: working: job 1 done"))
    assert logs_have(server, "hello", "app[web.1]: listening on port", "dyno=web.2 connect=")
    running = containers(engine, server, "hello")
    assert set(running) == {"web.1", "web.2", "worker.1"}
    web = running["web.1"]
    env = dict(item.split("=", 1) for item in web.attrs["Config"]["Env"])
    assert env["DYNO"] == "web.1" and env["HOME"] == "/app"
    published = web.attrs["HostConfig"]["PortBindings"][f"{env['PORT']}/tcp"]
    assert published == [{"HostIp": "127.0.0.1", "HostPort": env["PORT"]}]
    assert web.attrs["Config"]["User"] == "1000:1000"
    assert web.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert "PORT" not in dict(
        item.split("=", 1) for item in running["worker.1"].attrs["Config"]["Env"]
    )


def test_a_slug_is_built_in_the_stack_image_and_sizes_become_container_limits(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    server.create_app("built")
    output, last = server.deploy_output("built", CONTAINER_APP)
    assert "release" in last, output
    assert f"Building in {DEFAULT_STACK_IMAGE}" in output
    assert "-----> Installing dependencies with uv from requirements.txt (pip)" in output
    assert "+ six==1.17.0" in output
    server.scale("built", web=1)
    wait_for_dynos(server, "built", {"web.1": "up"}, 120)
    with server.router("built") as router:
        answer = router.get("/").json()
    # The stack's interpreter runs the virtualenv the build made at /app, where it runs.
    assert answer["executable"] == "/app/.venv/bin/python"
    assert answer["prefix"] == "/usr"
    assert answer["six"] == "1.17.0" and answer["uid"] == 1000 and answer["home"] == "/app"
    limits = containers(engine, server, "built")["web.1"].attrs["HostConfig"]
    assert (limits["Memory"], limits["MemorySwap"]) == (GIB, GIB)  # twice 512 MB
    assert (limits["CpuShares"], limits["CpuQuota"], limits["PidsLimit"]) == (1024, 100_000, 256)
    with server.api() as api:
        api.patch(
            "/apps/built/formation", json={"updates": [{"type": "web", "size": "Standard-2X"}]}
        ).raise_for_status()

    def resized() -> bool:
        running = containers(engine, server, "built").get("web.1")
        return running is not None and running.attrs["HostConfig"]["Memory"] == 2 * GIB

    wait_for(resized, 60, "web.1 restarted as a Standard-2X container")
    limits = containers(engine, server, "built")["web.1"].attrs["HostConfig"]
    assert (limits["CpuShares"], limits["CpuQuota"], limits["PidsLimit"]) == (2048, 200_000, 512)


@pytest.mark.timeout(300)  # uv downloads Django into the build's container
def test_the_django_example_builds_unmodified_runs_its_release_phase_and_serves(
    server: RunningServer,
) -> None:
    server.create_app("djangoapp")
    # It asks for Python 3.13 (.python-version), which bookworm's stack lacks: the server's
    # (pyenv's here) is copied into the slug, and the dynos run it from there.
    output, last = server.deploy_output("djangoapp", EXAMPLES / "django")
    assert last.get("release", {}).get("status") == "succeeded", output[-3000:]
    assert "-----> Using Python 3.13 specified in .python-version" in output
    assert ", copied into the slug: /app/.heroku/python/bin/python3.13" in output
    assert "$ python manage.py collectstatic --noinput" in output
    wait_for_dynos(server, "djangoapp", {"web.1": "up"}, 120)
    with server.router("djangoapp") as router:
        assert router.get("/").status_code == 200
    # The release command ran as a one-off container from the new release's image.
    assert logs_have(server, "djangoapp", "Applying sessions.0001_initial... OK")
    said = server.cli("run", "--no-tty", "-a", "djangoapp", "python --version")
    assert "Python 3.13." in said.stdout, said


def test_ps_restart_and_ps_stop_replace_and_stop_containers(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    server.create_app("restarts")
    server.deploy("restarts", EXAMPLES / "hello")
    server.scale("restarts", web=1, worker=1)
    wait_for_dynos(server, "restarts", {"web.1": "up", "worker.1": "up"}, 120)
    before: Container = containers(engine, server, "restarts")["web.1"]
    server.cli("ps:restart", "-a", "restarts", "web.1")

    def replaced() -> bool:
        now = containers(engine, server, "restarts").get("web.1")
        return now is not None and now.id != before.id

    wait_for(replaced, 60, "a new container for web.1")
    wait_for_dynos(server, "restarts", {"web.1": "up", "worker.1": "up"}, 60)
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(before.id)  # the old one is removed, not left stopped
    worker = containers(engine, server, "restarts")["worker.1"]
    server.cli("ps:stop", "-a", "restarts", "worker.1")
    wait_for(
        lambda: logs_have(
            server, "restarts", "dynos[worker.1]: Stopping all processes with SIGTERM"
        )
    )
    # sparse: a full list inspects each container, and one removed meanwhile raises NotFound
    wait_for(lambda: worker.id not in {c.id for c in engine.containers.list(all=True, sparse=True)})


PROBE = (
    "python3 -c 'import socket, sys\n"
    "for host in sys.argv[2:]:\n"
    "    try: socket.create_connection((host, int(sys.argv[1])), timeout=3)\n"
    '    except OSError as e: print(host, "blocked", type(e).__name__)\n'
    '    else: print(host, "reached")\' '
)


def test_one_off_dynos_run_as_containers_that_reach_no_other_dyno(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    server.create_app("oneoff")
    server.deploy("oneoff", EXAMPLES / "hello")
    wait_for_dynos(server, "oneoff", {"web.1": "up"}, 120)
    web = containers(engine, server, "oneoff")["web.1"]
    env = dict(item.split("=", 1) for item in web.attrs["Config"]["Env"])
    network = next(iter(web.attrs["NetworkSettings"]["Networks"].values()))
    targets = [network["IPAddress"], network["Gateway"]]
    server.cli("run:detached", "-a", "oneoff", PROBE + env["PORT"] + " " + " ".join(targets))
    for target in targets:  # neither the dyno itself nor its port published on the host
        wait_for(lambda t=target: logs_have(server, "oneoff", f"{t} blocked"), 30, target)
    assert not any(logs_have(server, "oneoff", f"{target} reached") for target in targets)
    said = server.cli("run:detached", "-a", "oneoff", "echo from $DYNO as $(id -u)").stdout
    name = said.split("run.")[1].split()[0].rstrip(".")
    wait_for(lambda: logs_have(server, "oneoff", f"app[run.{name}]: from run.{name} as 1000"))
    wait_for(
        lambda: logs_have(server, "oneoff", f"dynos[run.{name}]: Process exited with status 0")
    )
    env = {**os.environ, "DYNOS_HOME": str(server.home)}
    attached = subprocess.run(
        [sys.executable, "-m", "dynos", "run", "-a", "oneoff", "--", "tr a-z A-Z; exit 3"],
        input="from stdin\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert attached.stdout == "FROM STDIN\n", attached.stderr
    assert attached.returncode == 3


def test_a_dyno_that_ignores_sigterm_is_killed_after_the_grace_period_with_r12(
    server: RunningServer,
) -> None:
    server.create_app("r12")
    server.deploy("r12", CONTAINER_APP)
    server.scale("r12", web=0, stubborn=1)
    wait_for_dynos(server, "r12", {"stubborn.1": "up"}, 120)
    wait_for(lambda: logs_have(server, "r12", "app[stubborn.1]: started"))  # its handler is set
    server.scale("r12", stubborn=0)
    wait_for_dynos(server, "r12", {}, 60)
    assert logs_have(
        server,
        "r12",
        "app[stubborn.1]: ignoring SIGTERM",  # the init passed it on to the app
        "dynos[stubborn.1]: Error R12 (Exit timeout)",
        "dynos[stubborn.1]: Process exited with status 137",
    )


def test_dynos_run_gets_a_terminal_in_its_container(server: RunningServer) -> None:
    server.create_app("shell")
    server.deploy("shell", EXAMPLES / "hello")
    env = {**os.environ, "DYNOS_HOME": str(server.home), "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:  # the CLI, on a terminal as a user would run it
        os.execve(
            sys.executable, [sys.executable, "-m", "dynos", "run", "-a", "shell", "bash"], env
        )
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"tty; id -u; echo $((6*7))\r")
        said = read_until(fd, b"42\r\n")
        assert b"/dev/pts/" in said and b"1000" in said
        os.write(fd, b"exit 5\r")
        status = wait_exit(pid, fd)
    finally:
        os.close(fd)
    assert status == 5
    assert logs_have(server, "shell", "Process exited with status 5")


def test_a_restarted_server_removes_the_containers_its_predecessor_left(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    home = tmp_path / "home"
    first = start_server(home, *QUICK)
    first.create_app("left")
    first.deploy("left", EXAMPLES / "hello")
    first.scale("left", worker=1)
    wait_for_dynos(first, "left", {"web.1": "up", "worker.1": "up"}, 120)
    first.process.send_signal(signal.SIGKILL)  # no shutdown: its containers stay behind
    first.process.wait()
    assert len(containers(engine, first, "left")) == 2
    second = start_server(home, *QUICK)
    try:
        wait_for_dynos(second, "left", {"web.1": "up", "worker.1": "up"}, 120)
        running = containers(engine, second, "left")
        assert set(running) == {"web.1", "worker.1"}, second.logs("left")
        mine = [f"{LABEL}.server={server_id(str(home))}", f"{LABEL}.app=left"]
        left = engine.containers.list(all=True, sparse=True, filters={"label": mine})
        assert len(left) == 2  # no more
    finally:
        remove_images(engine, second)
    assert containers(engine, second, "left") == {}


def test_apps_destroy_removes_the_apps_release_images(
    server: RunningServer, engine: docker.DockerClient
) -> None:
    server.create_app("doomed")
    server.deploy("doomed", EXAMPLES / "hello")
    wait_for_dynos(server, "doomed", {"web.1": "up"}, 120)
    with server.api() as api:
        app_id = api.get("/apps/doomed").json()["id"]
    mine = {"label": f"{LABEL}.app-id={app_id}"}
    assert [image.tags for image in engine.images.list(filters=mine)] != []
    server.cli("apps:destroy", "doomed", "--confirm", "doomed")
    wait_for(lambda: engine.images.list(filters=mine) == [], 60, "the app's images removed")


def test_stack_build_without_an_engine_is_one_clear_line() -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"}
    result = subprocess.run(
        [sys.executable, "-m", "dynos", "stack:build"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "The Docker engine is not running or cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_stack_build_without_the_mirror_says_the_network_is_the_cause(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9/debian"  # the discard port: nothing listens
    result = subprocess.run(
        [
            *(sys.executable, "-m", "dynos", "stack:build", "--image", "dynos/stack:never"),
            *("--cache-dir", str(tmp_path), "--mirror", unreachable),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "dynos: debootstrap failed with status 1. The Debian mirror could not be reached: "
        "check the network (or pass --mirror)."
    )
    # No tarball, no half-made root filesystem: only the lock that kept builds apart.
    assert [path.name for path in tmp_path.iterdir()] == ["stack-bookworm.lock"]


def test_no_engine_and_no_stack_image_are_one_clear_line(tmp_path: Path) -> None:
    for extra, env, said in (
        ((), {"DOCKER_HOST": "unix:///nonexistent.sock"}, "The Docker engine is not running"),
        (("--stack-image", "dynos/missing:none"), {}, "dynos stack:build --image dynos/missing"),
    ):
        with pytest.raises(AssertionError) as failed:
            start_server(tmp_path / "home", "--backend", "docker", *extra, env=env)
        assert said in str(failed.value)
        assert "Traceback" not in str(failed.value)
