"""Each dyno's app directory is writable, its own and ephemeral (issue 13, item 3): a dyno
writes a sqlite file, a socket, a directory and a change to a file of its release; another
dyno of the app sees none of it, a restart forgets it, the release stays as built, and HOME
is the app directory. As root (an overlay in the dyno's namespace) and without root (a copy
of the release, or an overlay in a user namespace where the kernel allows one)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, wait_for
from tests.integration.test_containment import root_only, start_unprivileged

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def unprivileged() -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for each in servers:
        if each.process.poll() is None:
            each.stop()


CHECK = """\
import os, socket, sqlite3, sys, time
found = [n for n in ("db.sqlite3", "ctl.sock", "made-here") if os.path.exists(n)]
same = os.path.samefile(os.environ["HOME"], os.getcwd())
data = open("sub/data.txt").read().strip()
print(f"{os.environ['DYNO']} home-is-app-dir={same} found={found or 'nothing'} data={data}")
if sys.argv[1:] == ["write"]:
    db = sqlite3.connect("db.sqlite3")
    db.execute("create table t (x)")
    db.execute("insert into t values ('kept')")
    db.commit()
    control = socket.socket(socket.AF_UNIX)
    control.bind("ctl.sock")  # as gunicorn's control socket is
    control.listen()
    os.mkdir("made-here")
    with open("sub/data.txt", "w") as f:
        f.write("changed")
    print(os.environ["DYNO"], "wrote", db.execute("select x from t").fetchone()[0], flush=True)
    time.sleep(1000)
"""


def writer_app(tmp_path: Path) -> Path:
    directory = tmp_path / f"src-{uuid.uuid4().hex[:8]}"
    (directory / "sub").mkdir(parents=True)
    (directory / "Procfile").write_text("worker: python3 check.py write\n")
    (directory / "check.py").write_text(CHECK)
    (directory / "sub" / "data.txt").write_text("original\n")
    return directory


def said(server: RunningServer, app: str, pattern: str) -> list[str]:
    return re.findall(pattern, server.logs(app), re.M)


def scenario(server: RunningServer, tmp_path: Path) -> None:
    app = f"app-{uuid.uuid4().hex[:8]}"
    server.create_app(app)
    release = server.deploy(app, writer_app(tmp_path))
    slug = server.home / "slugs" / release["slug"]["id"]  # type: ignore[index]
    server.scale(app, worker=1)
    wait_for(lambda: said(server, app, r"worker\.1 wrote kept$"), 60, "the first dyno's writes")

    # A second dyno of the app, while the first runs: none of it is there.
    server.cli("run:detached", "-a", app, "python3 check.py")
    wait_for(lambda: said(server, app, r"run\.\d+ home-is-app-dir"), 60, "the one-off's look")
    [one_off] = said(server, app, r"(run\.\d+ home-is-app-dir=.*)$")
    assert one_off.endswith("home-is-app-dir=True found=nothing data=original"), one_off

    # A restart starts from the release again.
    server.cli("ps:restart", "worker", "-a", app)
    wait_for(lambda: len(said(server, app, r"worker\.1 wrote kept$")) == 2, 60, "the restart")
    looks = said(server, app, r"(worker\.1 home-is-app-dir=.*)$")
    assert looks == ["worker.1 home-is-app-dir=True found=nothing data=original"] * 2, looks

    # The release itself is as built.
    assert (slug / "sub" / "data.txt").read_text() == "original\n"
    assert sorted(p.name for p in slug.iterdir() if p.name != ".venv") == [
        "Procfile",
        "check.py",
        "sub",
    ]


@root_only
def test_as_root_each_dyno_writes_its_own_overlay_of_the_release(
    server: RunningServer, tmp_path: Path
) -> None:
    scenario(server, tmp_path)


def test_without_root_each_dyno_writes_its_own_view_of_the_release(
    tmp_path: Path, unprivileged: list[RunningServer]
) -> None:
    server = start_unprivileged(tmp_path / "home", unprivileged)
    scenario(server, tmp_path)
    said = (tmp_path / "home-server.log").read_text()
    if "an overlay of its release (in a user namespace)" in said:  # where the kernel allows
        assert not (server.home / "app-dirs").exists()
        return
    assert "a copy of its release as each dyno's app directory" in said, said
    # Each copy goes when its dyno ends: the two live dynos' (the worker, and the one-off
    # until it exits) at most.
    wait_for(lambda: len(list((server.home / "app-dirs").iterdir())) == 1, 30, "the copies gone")
