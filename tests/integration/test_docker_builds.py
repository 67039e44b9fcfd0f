"""Builds on `--backend docker` as on the local backend: the same package managers, Python
version files and output, with the stack image's interpreters or the server's (copied into
the slug) and the server's uv; and an image per release, which a rollback runs.

Needs a running engine, the stack image and PyPI: these tests fail, never skip, without
them, as CI must run them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from uv import find_uv_bin

from dynos.core.containers import DEFAULT_STACK_IMAGE, LABEL
from dynos.testing.harness import RunningServer, start_server, wait_for, wait_for_dynos
from tests.integration.test_docker_backend import (
    CONTAINER_APP,
    QUICK,
    containers,
    remove_images,
)
from tests.integration.test_python_builds import envecho, installed, released

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    engine = docker.from_env()
    running = start_server(tmp_path_factory.mktemp("docker-builds") / "home", *QUICK)
    yield running
    remove_images(engine, running)
    engine.close()


def stack_python() -> str:
    """The stack image's python3 version, as the build reports it."""
    engine = docker.from_env()
    said = engine.containers.run(
        DEFAULT_STACK_IMAGE,
        ["python3", "-c", "import platform; print(platform.python_version())"],
        remove=True,
    )
    return bytes(said).decode().strip()


def test_a_uv_project_builds_with_the_stack_python_it_asks_for_and_serves(
    server: RunningServer, tmp_path: Path
) -> None:
    app = tmp_path / "uvapp"
    shutil.copytree(CONTAINER_APP, app)
    (app / "requirements.txt").unlink()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "uvapp"\nversion = "1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["six==1.17.0"]\n'
    )
    version = stack_python()  # exactly the stack's: the server's own are newer 3.11s here
    (app / ".python-version").write_text(f"{version}\n")
    subprocess.run([find_uv_bin(), "lock", "--quiet"], cwd=app, check=True, timeout=120)
    server.create_app("uvapp")
    output, _ = released(server, "uvapp", app)
    assert "-----> Python app detected" in output
    assert f"-----> Using Python {version} specified in .python-version" in output
    assert f"-----> Python {version} from {DEFAULT_STACK_IMAGE}: /usr/bin/python3.11" in output
    assert "-----> Installing dependencies with uv from uv.lock (uv)" in output
    assert "+ six==1.17.0" in output
    server.scale("uvapp", web=1)
    wait_for_dynos(server, "uvapp", {"web.1": "up"}, 120)
    with server.router("uvapp") as router:
        answer = router.get("/").json()
    assert answer["executable"] == "/app/.venv/bin/python" and answer["six"] == "1.17.0"
    assert answer["prefix"] == "/usr"  # the stack's own interpreter under the virtualenv
    assert answer["version"] == version


def server_python() -> str:
    """A minor version of Python the server has (pyenv's) and the stack image lacks."""
    versions = Path.home() / ".pyenv" / "versions"
    for minor in ("3.13", "3.12"):
        if any(versions.glob(f"{minor}.*/bin/python{minor}")):
            return minor
    raise AssertionError(f"no Python 3.13 or 3.12 in {versions}: this test needs one of them")


def test_a_python_only_the_server_has_is_copied_into_the_slug_and_runs_in_the_dyno(
    server: RunningServer, tmp_path: Path
) -> None:
    minor = server_python()
    app = tmp_path / "newer"
    shutil.copytree(CONTAINER_APP, app)
    (app / ".python-version").write_text(f"{minor}\n")
    (app / "decoy").mkdir()
    (app / ".heroku").symlink_to("decoy")  # an upload's own .heroku: replaced, not followed
    # What the build's container sees of the host: its mounts, the interpreter's read-only.
    (app / "bin").mkdir()
    (app / "bin" / "pre_compile").write_text(
        "#!/bin/sh\nawk '{print \"mount\", $5, $6}' /proc/self/mountinfo\n"
        "touch /opt/dynos/python/x 2>/dev/null || echo 'interpreter tree: read-only'\n"
    )
    server.create_app("newer")
    output, slug = released(server, "newer", app)
    found = re.search(
        rf"-----> Python ({re.escape(minor)}\.[0-9]+) from (\S+), copied into", output
    )
    assert found, output
    version, source = found.groups()
    assert f"-----> Using Python {minor} specified in .python-version" in output
    binary = f"/app/.heroku/python/bin/python{minor}"
    assert f"-----> Python {version} from {source}, copied into the slug: {binary}" in output
    assert "interpreter tree: read-only" in output
    mounts = dict(
        line.split()[1:3] for line in output.splitlines() if line.strip().startswith("mount ")
    )
    assert mounts["/opt/dynos/python"].split(",")[0] == "ro"
    # Besides the engine's own (/proc, /sys, /dev, /etc/hosts...): what a build saw before,
    # and the interpreter's tree.
    files = {m for m in mounts if not m.startswith(("/proc", "/sys", "/dev"))} - {
        "/etc/dynos/ca.crt"
    }
    engine = {"/", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/usr/sbin/docker-init"}
    before = {"/app", "/tmp/.cache/uv", "/usr/local/bin/uv", "/build"}
    assert files == engine | before | {"/opt/dynos/python"}, mounts
    # The copy is in the slug (not where the upload's link pointed), the venv links to it.
    assert (slug / ".heroku").is_dir() and not (slug / ".heroku").is_symlink()
    assert (slug / ".heroku" / "python" / "bin" / f"python{minor}").is_file()
    assert not (slug / "decoy" / "python").exists()
    assert not any(slug.glob(".heroku/python/lib/python3.*/test/__init__.py"))  # left out
    assert installed(slug, "six-1.17.0.dist-info")
    server.scale("newer", web=1)
    wait_for_dynos(server, "newer", {"web.1": "up"}, 120)
    with server.router("newer") as router:
        answer = router.get("/").json()
    assert answer["version"] == version and answer["prefix"] == "/app/.heroku/python"
    assert answer["executable"] == "/app/.venv/bin/python" and answer["six"] == "1.17.0"
    said = server.cli("run", "--no-tty", "-a", "newer", "python --version")
    assert f"Python {version}" in said.stdout, said


def test_poetry_pipenv_and_version_files_as_the_local_build_reads_them(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("locks")
    poetry = """
        [[package]]
        name = "six"
        version = "1.16.0"
        description = ""
        optional = false
        python-versions = ">=2.7"
        groups = ["main"]
        files = []

        [[package]]
        name = "iniconfig"
        version = "2.0.0"
        description = ""
        optional = false
        python-versions = ">=3.7"
        groups = ["dev"]
        files = []

        [metadata]
        lock-version = "2.1"
        python-versions = ">=3.11"
        content-hash = "0"
    """
    output, slug = released(server, "locks", envecho(tmp_path, "poetry", **{"poetry.lock": poetry}))
    assert "-----> Installing dependencies with uv from poetry.lock (Poetry)" in output
    newest = re.search(
        r"-----> No Python version was specified. Using the newest Python on this server: "
        r"([0-9]+)\.([0-9]+)\.([0-9]+)\n",
        output,
    )
    assert newest, output
    version = stack_python()
    assert tuple(map(int, newest.groups())) >= tuple(map(int, version.split(".")))
    assert installed(slug, "six-1.16.0.dist-info") and not installed(slug, "iniconfig")

    pipfile = {
        "_meta": {"requires": {"python_version": "3.11"}},
        "default": {"six": {"version": "==1.17.0"}},
        "develop": {"iniconfig": {"version": "==2.0.0"}},
    }
    app = envecho(tmp_path, "pipenv", **{"Pipfile.lock": json.dumps(pipfile)})
    output, slug = released(server, "locks", app)
    assert "-----> Using Python 3.11 specified in Pipfile.lock" in output
    assert "-----> Installing dependencies with uv from Pipfile.lock (Pipenv)" in output
    assert installed(slug, "six-1.17.0.dist-info") and not installed(slug, "iniconfig")

    # A version neither the stack image nor the server has: one line, as the local build's,
    # and the release before stays current.
    app = envecho(tmp_path, "wants", **{"requirements.txt": "", "runtime.txt": "python-3.14.0"})
    output, last = server.deploy_output("locks", app)
    assert "error" in last, output
    message = last["error"]["message"]  # type: ignore[index]
    assert "\n" not in message
    assert message.startswith("Python 3.14.0 was requested (in runtime.txt), but this server ")
    assert f" {version}, " in message  # the stack image's, among the server's own
    assert "and a container build downloads none. Ask for one of those in runtime.txt" in message
    with server.api() as api:
        releases = api.get("/apps/locks/releases").json()
    assert [r["version"] for r in releases] == [1, 2, 3]  # v3 (Pipenv) still current


def test_each_release_is_an_image_and_a_rollback_runs_the_old_releases_layers(
    server: RunningServer, tmp_path: Path
) -> None:
    engine = docker.from_env()
    server.create_app("rel")
    old = tmp_path / "old"
    shutil.copytree(CONTAINER_APP, old)
    new = tmp_path / "new"
    shutil.copytree(CONTAINER_APP, new)
    (new / "requirements.txt").write_text("six==1.16.0\n")
    released(server, "rel", old)  # v2
    server.scale("rel", web=1)

    def running(version: int, six: str) -> docker.models.images.Image:
        """The image web.1 runs once it is release ``version``'s, answering with ``six``."""

        def image() -> str | None:
            web = containers(engine, server, "rel").get("web.1")
            if web is None or web.attrs["Config"]["Image"] != f"dynos/rel:v{version}":
                return None
            with server.router("rel") as router:
                answer = router.get("/")
            ok = answer.status_code == 200 and answer.json()["six"] == six
            return str(web.attrs["Config"]["Image"]) if ok else None

        wait_for(image, 120, f"web.1 on v{version}")
        return engine.images.get(f"dynos/rel:v{version}")

    v2 = running(2, "1.17.0")
    released(server, "rel", new)  # v3
    v3 = running(3, "1.16.0")
    server.cli("config:set", "GREETING=hi", "-a", "rel")  # v4: same slug, a new release image
    v4 = running(4, "1.16.0")
    assert (
        v4.labels[f"{LABEL}.release"] == "4"
        and v4.labels[f"{LABEL}.slug"] == v3.labels[f"{LABEL}.slug"]
    )
    assert v4.attrs["Size"] == v3.attrs["Size"]  # no slug copied: labels only
    assert not [e for e in v4.attrs["Config"]["Env"] or [] if e.startswith("GREETING=")]
    with server.api() as api:
        api.post("/apps/rel/releases", json={"release": "2"}).raise_for_status()  # v5
    v5 = running(5, "1.17.0")
    # The rollback runs the old release's slug image: v2's layers, labelled as v5.
    assert v5.labels[f"{LABEL}.slug"] == v2.labels[f"{LABEL}.slug"] != v3.labels[f"{LABEL}.slug"]
    assert v5.attrs["RootFS"]["Layers"] == v2.attrs["RootFS"]["Layers"]
    assert v5.labels[f"{LABEL}.release"] == "5"
    engine.close()


def file_in_image(engine: docker.DockerClient, image: str, path: str) -> bytes:
    """A file of ``image``, read from a container made but never started: the output of a
    run (``cat``) came back empty once while the engine was busy (it can hand over a quick
    container's exit before the last of its output is logged)."""
    container = engine.containers.create(image, ["true"])
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            assert member is not None
            return member.read()
    finally:
        container.remove(force=True)


def test_a_release_image_left_by_another_app_of_the_same_name_is_never_reused(
    tmp_path: Path,
) -> None:
    # An app renamed away (or a failed removal) leaves dynos/<name>:v2 with its own code; a
    # new app of that name must get its own v2, not run the old one's with its config vars.
    from dynos.backends.images import ReleaseImages

    engine = docker.from_env()
    images = ReleaseImages(engine, DEFAULT_STACK_IMAGE)
    name = f"reuse-{tmp_path.name[-8:].lower()}"
    made: list[str] = []
    ids: list[str] = []  # the old app's image ends untagged: removed by its id
    try:
        for app_id, slug_id, text in (("old-app", "s-old", "old"), ("new-app", "s-new", "new")):
            slug = tmp_path / slug_id
            slug.mkdir()
            (slug / "who").write_text(text)
            made.append(images.ensure(app_id, name, slug, release=2))
            image = engine.images.get(made[-1])
            ids.append(image.id)
            labels = image.labels
            assert labels[f"{LABEL}.app-id"] == app_id and labels[f"{LABEL}.slug"] == slug_id
        assert made[0] == made[1]  # the same tag, now the new app's
        assert file_in_image(engine, made[1], "/app/who") == b"new"
    finally:
        for image in engine.images.list(name=f"dynos/{name}"):
            for tag in image.tags:
                engine.images.remove(tag, force=True)
        for image_id in ids:
            with contextlib.suppress(docker.errors.NotFound):
                engine.images.remove(image_id, force=True)
