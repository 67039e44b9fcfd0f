"""Dyno lifecycle with real processes and real containers: R10, R12, R14/R15, crash back-off,
idling, sizes and health checks on both backends (the module server is parametrized by
backend), and isolation and orphans on the local one."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dynos.testing.harness import RunningServer, dyno_states, start_server, wait_for, wait_for_dynos
from tests.integration.conftest import BACKENDS, backend_server, each_test, started

LIFECYCLE = Path(__file__).parent / "apps" / "lifecycle"


# Short timeouts, so that lifecycle events happen within a test.
QUICK = ("--stop-grace", "1", "--boot-timeout", "2", "--crash-backoff", "2")
QUICK += ("--crash-backoff-max", "4")


@pytest.fixture(scope="module", params=BACKENDS)
def quick_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One quick server for the module per backend: each test uses apps of its own and looks
    only at them. A container's start takes part of the boot timeout: docker's is longer."""
    home = tmp_path_factory.mktemp(f"lifecycle-{request.param}") / "home"
    options = QUICK if request.param == "local" else (*QUICK, "--boot-timeout", "5")
    yield from backend_server(home, request.param, *options)


@pytest.fixture
def quick(quick_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(quick_server)


@pytest.fixture
def own_quick(tmp_path: Path) -> Iterator[RunningServer]:
    """A quick server of the test's own: for a test that counts its users and stops it."""
    yield from started(tmp_path / "home", *QUICK)


def deploy(server: RunningServer, app: str, directory: Path = LIFECYCLE) -> None:
    server.create_app(app)
    server.deploy(app, directory)


def log_has(server: RunningServer, app: str, *fragments: str) -> bool:
    text = server.logs(app)
    return all(fragment in text for fragment in fragments)


def test_web_dyno_that_never_binds_its_port_is_killed_with_r10(
    quick: RunningServer, tmp_path: Path
) -> None:
    app_dir = tmp_path / "sleepy"
    app_dir.mkdir()
    (app_dir / "Procfile").write_text("web: sleep 1000\n")
    deploy(quick, "sleepy", app_dir)
    wait_for(
        lambda: log_has(
            quick, "sleepy", "Error R10 (Boot timeout)", "Stopping process with SIGKILL"
        ),
        what="R10",
    )
    wait_for(lambda: dyno_states(quick, "sleepy").get("web.1") in ("crashed", "starting"))


def test_memory_over_quota_logs_r14_and_keeps_running(quick: RunningServer) -> None:
    deploy(quick, "r14")
    with quick.api() as api:
        api.patch("/apps/r14/config-vars", json={"HOG_MB": "600"}).raise_for_status()
    quick.scale("r14", web=0, hog=1)
    wait_for(lambda: log_has(quick, "r14", "Error R14 (Memory quota exceeded)"), what="R14")
    text = quick.logs("r14")
    assert "dynos[hog.1]: Process running mem=" in text
    assert "Error R15" not in text
    assert dyno_states(quick, "r14") == {"hog.1": "up"}


def test_memory_over_twice_the_quota_is_killed_with_r15(quick: RunningServer) -> None:
    deploy(quick, "r15")
    with quick.api() as api:
        api.patch("/apps/r15/config-vars", json={"HOG_MB": "1300"}).raise_for_status()
    # The neighbour up first: a container web dyno was still starting when the hog's R15
    # came (CI), and "untouched" says nothing about a dyno that never ran.
    quick.scale("r15", web=1)
    wait_for_dynos(quick, "r15", {"web.1": "up"})
    quick.scale("r15", web=1, hog=1)
    wait_for(lambda: log_has(quick, "r15", "Error R15 (Memory quota vastly exceeded)"), what="R15")
    wait_for(lambda: log_has(quick, "r15", "dynos[hog.1]: State changed from up to crashed"))
    assert dyno_states(quick, "r15")["web.1"] == "up"  # the neighbour is untouched


def test_stop_escalates_to_sigkill_after_the_grace_period_with_r12(quick: RunningServer) -> None:
    deploy(quick, "r12")
    quick.scale("r12", web=1, stubborn=1)
    wait_for_dynos(quick, "r12", {"web.1": "up", "stubborn.1": "up"})
    wait_for(lambda: "app[stubborn.1]: started" in quick.logs("r12"))  # its handler is set
    quick.scale("r12", web=0, stubborn=0)
    wait_for_dynos(quick, "r12", {})
    text = quick.logs("r12")
    assert "dynos[stubborn.1]: Stopping all processes with SIGTERM" in text
    assert "dynos[stubborn.1]: Error R12 (Exit timeout)" in text
    assert "dynos[stubborn.1]: Stopping remaining processes with SIGKILL" in text
    assert "dynos[stubborn.1]: State changed from up to down" in text
    assert "dynos[web.1]: Process exited with status 143" in text


def test_repeated_crashes_back_off_and_show_crashed(quick: RunningServer) -> None:
    deploy(quick, "crashy")
    quick.scale("crashy", web=0, crasher=1)
    wait_for(lambda: quick.logs("crashy").count("Process exited with status 3") >= 2)
    # After the second quick crash the dyno waits out its back-off, shown as crashed.
    wait_for(lambda: dyno_states(quick, "crashy") == {"crasher.1": "crashed"}, timeout=10)
    text = quick.logs("crashy")
    assert "dynos[crasher.1]: State changed from starting to crashed" in text or (
        "State changed from up to crashed" in text
    )


def test_router_answers_h10_when_every_web_dyno_crashed(
    quick: RunningServer, tmp_path: Path
) -> None:
    app_dir = tmp_path / "dead"
    app_dir.mkdir()
    (app_dir / "Procfile").write_text("web: exit 1\n")
    deploy(quick, "dead", app_dir)
    wait_for(lambda: quick.logs("dead").count("Process exited with status 1") >= 2)
    wait_for_dynos(quick, "dead", {"web.1": "crashed"})
    with quick.router("dead") as router:
        response = router.get("/")
    assert response.status_code == 503
    assert "code=H10" in quick.logs("dead")


def test_lone_1x_web_dyno_idles_and_wakes_on_the_next_request(quick: RunningServer) -> None:
    deploy(quick, "sleeper")
    wait_for_dynos(quick, "sleeper", {"web.1": "up"})
    quick.cli("settings:set", "idle_after=2", "-a", "sleeper")
    wait_for_dynos(quick, "sleeper", {"web.1": "idle"})
    assert log_has(quick, "sleeper", "dynos[web.1]: Idling", "State changed from up to down")
    with quick.router("sleeper") as router:
        started = time.monotonic()
        response = router.get("/")
        waited = time.monotonic() - started
    states = dyno_states(quick, "sleeper")
    assert response.status_code == 200
    assert waited < 20
    assert states == {"web.1": "up"}
    assert log_has(quick, "sleeper", "dynos[web.1]: Unidling")


def test_two_web_dynos_or_a_2x_never_idle(quick: RunningServer) -> None:
    deploy(quick, "busy")
    quick.scale("busy", web=2)
    quick.cli("settings:set", "idle_after=1", "-a", "busy")
    wait_for_dynos(quick, "busy", {"web.1": "up", "web.2": "up"})
    quick.cli("ps:scale", "web=1:2X", "-a", "busy")
    wait_for_dynos(quick, "busy", {"web.1": "up"})
    time.sleep(3)  # three idle periods: a 1X would have idled by now
    assert dyno_states(quick, "busy") == {"web.1": "up"}
    assert "Idling" not in quick.logs("busy")


@pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs the server to run as root")
def test_dynos_run_as_their_apps_user_and_cannot_read_the_platform(
    own_quick: RunningServer,
) -> None:
    quick = own_quick  # it counts the users of its server, then stops it
    deploy(quick, "jailed")
    deploy(quick, "other")
    wait_for_dynos(quick, "jailed", {"web.1": "up"})
    wait_for_dynos(quick, "other", {"web.1": "up"})
    with quick.api() as api:
        slugs = {
            app: quick.home / "slugs" / api.get(f"/apps/{app}/releases").json()[-1]["slug"]["id"]
            for app in ("jailed", "other")
        }
    probes = {
        "credentials": quick.home / "credentials",
        "database": quick.home / "dynos.db",
        "other app": slugs["other"] / "web.py",
        "own code": slugs["jailed"] / "web.py",
    }
    with quick.router("jailed") as router:
        answer = router.get("/", params=[("read", str(p)) for p in probes.values()]).json()
    with quick.router("other") as router:
        other_uid = router.get("/").json()["uid"]
    assert answer["uid"] not in (0, other_uid)
    # Closed to it; or not even there, where the home lies under /tmp (as in these tests),
    # which the dyno's private scratch covers: only its own release is bound back in.
    closed = ("PermissionError", "FileNotFoundError")
    assert {name: answer[str(path)] in closed for name, path in probes.items()} == {
        "credentials": True,
        "database": True,
        "other app": True,
        "own code": False,
    }
    assert answer[str(probes["own code"])] == "readable"
    # System uids are few: a server that stops leaves none of its app users behind.
    tag = f"dynos {quick.home.resolve()}"
    assert sum(entry.pw_gecos == tag for entry in pwd.getpwall()) == 2
    assert quick.stop() == 0
    assert not [entry.pw_name for entry in pwd.getpwall() if entry.pw_gecos == tag]


def test_health_check_path_decides_when_a_web_dyno_gets_traffic(quick: RunningServer) -> None:
    deploy(quick, "checked")
    wait_for_dynos(quick, "checked", {"web.1": "up"})
    quick.cli("settings:set", "health_check_path=/unhealthy", "-a", "checked")
    quick.cli("ps:restart", "-a", "checked")
    # /unhealthy answers 500: the dyno never counts as up, and the boot timeout ends it.
    wait_for(
        lambda: log_has(quick, "checked", "did not answer GET /unhealthy with 2xx/3xx"),
        what="R10 naming the health check",
    )
    assert "up" not in dyno_states(quick, "checked").values()
    quick.cli("settings:set", "health_check_path=/healthy", "-a", "checked")
    quick.cli("ps:restart", "-a", "checked")
    wait_for_dynos(quick, "checked", {"web.1": "up"})


@pytest.mark.skipif(os.geteuid() != 0, reason="orphans are found through cgroups, as root")
def test_dynos_of_a_killed_server_are_reaped_by_the_next_one(tmp_path: Path) -> None:
    # The next server on the same home: only one may hold a home at a time, so what it
    # finds of its home's is a dead server's (tests/integration/test_containment.py covers
    # detached processes, and a server without root).
    first = start_server(tmp_path / "home")
    deploy(first, "orphan")
    wait_for_dynos(first, "orphan", {"web.1": "up"})
    children = psutil.Process(first.process.pid).children(recursive=True)
    watchdog = [c for c in children if "watchdog.py" in " ".join(c.cmdline())]
    dynos = [c for c in children if c not in watchdog]
    for process in [first.process, *watchdog]:  # no chance to stop its dynos
        process.kill()
    first.process.wait()
    assert any(d.is_running() for d in dynos)
    second = start_server(tmp_path / "home")
    try:
        _, alive = psutil.wait_procs(dynos, timeout=10)
        assert alive == []
    finally:
        second.stop()
