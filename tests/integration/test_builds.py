"""Builds and uploads against a real server: a build runs a tenant's code (a dependency's
setup.py), confined, on a deadline, and an upload is judged before it is unpacked."""

from __future__ import annotations

import gzip
import os
import pwd
import re
import shutil
import stat
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from dynos.testing.harness import (
    RunningServer,
    dyno_states,
    start_server,
    tarball,
    wait_for,
    wait_for_dynos,
)
from tests.integration.conftest import each_test, started

ENVECHO = Path(__file__).parent / "apps" / "envecho"
NOBODY = 65534
MB = 1024 * 1024

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="builds run as the app's user only when the server runs as root"
)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module's tests that take ``server``: each uses apps of its own and
    looks only at them."""
    yield from started(tmp_path_factory.mktemp("builds") / "home", "--stop-grace", "5")


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


def deploy(server: RunningServer, app: str, directory: Path) -> tuple[str, dict[str, Any]]:
    return server.deploy_output(app, directory)


def app_with_package(tmp_path: Path, setup_py: str, name: str = "pkg") -> Path:
    """envecho with a requirements.txt naming a local package of that ``setup_py``."""
    app = tmp_path / f"app-{name}"
    shutil.copytree(ENVECHO, app)
    (app / "requirements.txt").write_text(f"./{name}\n")
    (app / name).mkdir()
    (app / name / "setup.py").write_text(textwrap.dedent(setup_py))
    return app


def app_user(server: RunningServer, app: str) -> pwd.struct_passwd:
    with server.api() as api:
        app_id = api.get(f"/apps/{app}").json()["id"]
    return pwd.getpwnam("dyno-" + app_id.replace("-", "")[:12])


def running_up(server: RunningServer, app: str) -> None:
    wait_for_dynos(server, app, {"web.1": "up"})


REPORT_SETUP = """
    import os, time
    from setuptools import setup

    here = os.path.dirname(os.path.abspath(__file__))
    groups = open("/proc/self/cgroup").read().splitlines()
    memory = [line.split(":", 2)[2] for line in groups if ":memory:" in line]
    with open(os.path.join(here, "built_by.txt"), "w") as out:
        out.write(f"{os.getuid()} {(memory or groups)[0].split(':', 2)[-1]}")
    for _ in range(600):  # the test reads the cgroup's limit (root's alone) meanwhile
        if os.path.exists(os.path.join(here, "go")):
            break
        time.sleep(0.05)
    setup(name="reporter", version="1.0")
"""


def memory_limit(group: str) -> int:
    """The memory limit of the cgroup at ``group`` (as /proc/<pid>/cgroup names it)."""
    v1 = Path("/sys/fs/cgroup/memory") / group.lstrip("/") / "memory.limit_in_bytes"
    v2 = Path("/sys/fs/cgroup") / group.lstrip("/") / "memory.max"
    return int((v1 if v1.exists() else v2).read_text())


@as_root
def test_a_build_runs_as_the_app_user_in_a_cgroup_of_its_largest_size(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("builder")
    server.deploy("builder", ENVECHO)
    server.cli("ps:type", "worker=2X", "-a", "builder")  # at 0 dynos, still the largest size
    app = app_with_package(tmp_path, REPORT_SETUP)

    def reports() -> list[Path]:
        return [p for p in (server.home / "slugs").glob("*/pkg/built_by.txt") if p.read_text()]

    with ThreadPoolExecutor(1) as pool:
        deploying = pool.submit(deploy, server, "builder", app)
        wait_for(reports, 60, "the build's report")
        [report] = reports()
        uid, group = report.read_text().split()
        limit = memory_limit(group)
        (report.parent / "go").touch()
        output, last = deploying.result(timeout=120)
    assert "release" in last, output
    assert "Building with the limits of a Standard-2X dyno, for up to 15 minutes" in output
    assert int(uid) == app_user(server, "builder").pw_uid != 0
    assert "/build-" in group and limit == 2 * 1024 * MB  # a 2X dyno's memory limit
    slug = server.home / "slugs" / last["release"]["slug"]["id"]  # type: ignore[index]
    assert report.parent.parent == slug

    # Afterwards the slug is root's again: the app may read it (its dynos run), not change it
    # (its group may write once a dyno opened it, but only through the dyno's own overlay:
    # the releases are read-only in the dyno's namespace, backends/appdir.py).
    for path in [slug, *slug.rglob("*")]:
        info = path.lstat()
        assert info.st_uid == 0, path
        if not stat.S_ISLNK(info.st_mode):
            assert info.st_mode & (stat.S_IWOTH | stat.S_ISUID) == 0, path
    assert list((server.home / "builds").iterdir()) == []

    # The release's dynos answer from its slug's environment (the last release's web.1 may
    # still be up when the deploy's answer ends: wait for the restart onto this one).
    def prefix() -> object:
        with server.router("builder") as router:
            response = router.get("/")
        return response.json()["prefix"] if response.status_code == 200 else None

    wait_for(lambda: prefix() == str(slug / ".venv"), 60, "the new release's web.1")


@as_root
def test_a_build_cannot_read_the_server_home_or_another_app(
    server: RunningServer, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    shutil.copytree(ENVECHO, victim)
    (victim / "secret.txt").write_text("victim-secret-4711\n")
    server.create_app("victim")
    release = server.deploy("victim", victim)
    running_up(server, "victim")  # its slug is open to its own group now
    victim_slug = server.home / "slugs" / release["slug"]["id"]  # type: ignore[index]
    home = server.home
    targets = [
        home / "credentials",
        home / "dynos.db",
        home / "server.json",
        victim_slug / "secret.txt",
        home,
        home / "slugs",
        home / "builds",
    ]
    evil = f"""
        import os, sys
        print("evil setup.py runs as uid", os.getuid())
        for path in {[str(t) for t in targets]!r}:
            try:
                if os.path.isdir(path):
                    print("LISTED", path, os.listdir(path))
                else:
                    print("READ", path, open(path, "rb").read(300))
            except OSError as error:
                print("DENIED", path, type(error).__name__)
        sys.exit(1)
    """
    server.create_app("evil")
    server.deploy("evil", ENVECHO)
    running_up(server, "evil")
    output, last = deploy(server, "evil", app_with_package(tmp_path, evil, "evilpkg"))
    assert last["error"]["id"] == "build_failed"  # type: ignore[index]
    assert "evil setup.py runs as uid" in output  # it did run
    assert "evil setup.py runs as uid 0" not in output
    # Not found where the build's private /tmp hides the server's home (a home under /tmp,
    # as here: only the slug and the build directory are bound back in), else not allowed.
    for target in targets:
        denied = rf"DENIED {re.escape(str(target))} (PermissionError|FileNotFoundError)"
        assert re.search(denied, output), target
    assert server.token not in output and "victim-secret" not in output
    assert dyno_states(server, "evil") == {"web.1": "up"}  # the previous release runs on


def test_a_build_gets_nothing_of_the_server_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_ONLY_SECRET", "do-not-pass-8813")
    server = start_server(tmp_path / "home")
    try:
        server.create_app("envy")
        show = """
            import os, sys
            print("BUILD ENV", sorted(os.environ.items()))
            sys.exit(1)
        """
        output, last = deploy(server, "envy", app_with_package(tmp_path, show))
    finally:
        server.stop()
    assert "BUILD ENV" in output and "build_failed" in str(last)
    assert "do-not-pass-8813" not in output and "SERVER_ONLY_SECRET" not in output
    builds = str(server.home / "builds")
    assert f"('HOME', '{builds}/" in output and f"('TMPDIR', '{builds}/" in output


def test_a_build_past_its_deadline_is_killed_whole_and_the_release_runs_on(
    tmp_path: Path,
) -> None:
    marker = f"{4000 + os.getpid() % 1000}.{int(time.time()) % 1000}"
    slow = f"""
        import subprocess, sys, time
        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)  # a detached child
        print("building slowly", flush=True)
        time.sleep(600)
    """
    server = start_server(tmp_path / "home", "--build-timeout", "4", "--stop-grace", "5")
    try:
        server.create_app("slow")
        server.deploy("slow", ENVECHO)
        running_up(server, "slow")
        started = time.monotonic()
        _, last = deploy(server, "slow", app_with_package(tmp_path, slow))
        assert time.monotonic() - started < 60
        assert last["error"]["id"] == "build_failed"  # type: ignore[index]
        message = last["error"]["message"]  # type: ignore[index]
        assert message.startswith("Build timed out after 4 seconds (the server's --build-timeout)")

        def sleepers() -> list[psutil.Process]:
            found = []
            for process in psutil.process_iter(["cmdline"]):
                if process.info["cmdline"] == ["sleep", marker]:
                    found.append(process)
            return found

        wait_for(lambda: not sleepers(), 10, "the build's detached child killed")
        with server.api() as api:
            assert len(api.get("/apps/slow/releases").json()) == 2
        assert dyno_states(server, "slow") == {"web.1": "up"}
        assert list((server.home / "builds").iterdir()) == []
    finally:
        server.stop()


@as_root
def test_what_a_build_writes_in_tmp_and_dev_shm_stays_its_own_and_goes_with_it(
    server: RunningServer, tmp_path: Path
) -> None:
    marker = f"dynos-build-test-{uuid.uuid4().hex}"
    places = [Path("/tmp") / marker, Path("/dev/shm") / marker]
    write = f"""
        import os, sys
        for path in {[str(p) for p in places]!r}:
            with open(path, "w") as out:
                out.write("left by a build")
        print("WROTE", [os.path.exists(p) for p in {[str(p) for p in places]!r}])
        sys.exit(1)
    """
    try:
        server.create_app("scribbler")
        output, last = deploy(server, "scribbler", app_with_package(tmp_path, write))
        assert "WROTE [True, True]" in output  # the build could write there
        assert last["error"]["id"] == "build_failed"  # type: ignore[index]
        assert [p for p in places if p.exists()] == []  # the machine never saw them
    finally:
        for place in places:
            place.unlink(missing_ok=True)


def test_without_root_a_double_forked_build_process_is_killed_at_the_deadline(
    tmp_path: Path,
) -> None:
    """Its parent gone, the sleeper is in no process group or tree of the build's: only a
    reaper above the build (its subreaper) still finds it."""
    marker = f"{5000 + os.getpid() % 1000}.{int(time.time()) % 1000}"
    escape = f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execvp("sleep", ["sleep", "{marker}"])
            os._exit(0)
        print("building slowly", flush=True)
        time.sleep(600)
    """

    def sleepers() -> list[psutil.Process]:
        return [
            p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]
        ]

    server = start_server(
        tmp_path / "home", "--build-timeout", "6", user=NOBODY if os.geteuid() == 0 else None
    )
    try:
        server.create_app("escaper")
        started = time.monotonic()
        _, last = deploy(server, "escaper", app_with_package(tmp_path, escape))
        assert time.monotonic() - started < 60
        message = last["error"]["message"]  # type: ignore[index]
        assert message.startswith("Build timed out after 6 seconds")
        wait_for(lambda: not sleepers(), 10, "the build's double-forked sleeper killed")
    finally:
        for each in sleepers():
            each.kill()
        server.stop()


def announcing(size: int) -> bytes:
    """A .tar.gz with a Procfile and a member whose header says ``size`` bytes, of which only
    1 MB follows: tiny, and it could be refused only on the header."""
    procfile = b"web: python3 web.py\n"
    info = tarfile.TarInfo("Procfile")
    info.size = len(procfile)
    head = info.tobuf(tarfile.GNU_FORMAT) + procfile.ljust(512, b"\0")
    huge = tarfile.TarInfo("data.bin")
    huge.size = size
    return gzip.compress(head + huge.tobuf(tarfile.GNU_FORMAT) + bytes(MB))


def test_an_upload_that_would_unpack_past_the_limit_is_refused_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big"
    shutil.copytree(ENVECHO, big)
    (big / "zeros.bin").write_bytes(bytes(3 * MB))
    for extra, upload, limit in [
        ((), announcing(1024**4), 1024),  # 1 TB announced in a 1 kB upload
        (("--max-unpacked-size", "2"), tarball(big), 2),  # 3 MB of zeros
    ]:
        server = start_server(tmp_path / f"home-{limit}", *extra)
        try:
            server.create_app("packed")
            with server.api() as api:
                response = api.post(
                    "/apps/packed/deploys",
                    content=upload,
                    headers={"Content-Type": "application/gzip"},
                )
                assert response.status_code == 422, response.text
                message = response.json()["message"]
                assert f"unpacks to more than {limit} MB" in message
                assert "--max-unpacked-size" in message
                assert len(api.get("/apps/packed/releases").json()) == 1
            assert list((server.home / "slugs").iterdir()) == []
        finally:
            server.stop()
