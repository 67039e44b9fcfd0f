"""``platform.releases``: deploy, rollback and update_config as use-cases, in process.

Each makes one new release in one transaction, logs what made it and ``Release vN created``
(``app[api]``), and wakes the manager, which restarts the dynos on the release; a wrong
request is refused before anything is written, logged or woken.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynos.core.scale import ScaleChange
from dynos.core.sizes import DynoSize, find_size
from dynos.errors import BuildFailed, UserError
from dynos.platform.build import Builder, Slug
from tests.platform.stage import ACCOUNT, PROCFILE, Stage, deploy

pytestmark = pytest.mark.anyio
BY = f"by user {ACCOUNT.email}"


# -- deploy ------------------------------------------------------------------------------------


async def test_a_first_deploy_releases_the_slug_and_starts_one_web_dyno(stage: Stage) -> None:
    app = await stage.platform.create_app("shop")
    await stage.platform.releases.update_config(app, {"GREETING": "hello"})
    stage.forget(app)
    slug = stage.slug()

    output, release = await deploy(stage, app, slug)

    assert output[0] == "-----> Discovering process types: web, worker"
    assert re.fullmatch(r"-----> Slug size: \d+ B", output[1]) and len(output) == 2
    assert (release.version, release.slug_id, release.processes) == (3, slug.id, PROCFILE)
    assert release.config == {"GREETING": "hello"}  # the config vars stay with the app
    assert (await stage.platform.releases.current(app)) == release
    assert await stage.formation(app) == {"web": (1, "Standard-1X"), "worker": (0, "Standard-1X")}
    assert stage.api_lines(app) == [
        f"app[api]: Deploy {slug.id[:8]} {BY}",
        f"app[api]: Release v3 created {BY}",
    ]
    assert stage.wakes == 1
    await stage.settle()
    assert stage.dynos(app) == {"web.1": "starting"}
    [started] = stage.backend.started
    assert (started.command, started.env["GREETING"]) == ("python3 web.py", "hello")


async def test_a_later_deploy_keeps_the_formation_of_the_types_it_still_has(stage: Stage) -> None:
    app = await stage.deployed_app()
    await stage.platform.dynos.scale(app, [ScaleChange("web", "=", 3, find_size("standard-2x"))])
    stage.forget(app)

    slug = stage.slug({"web": "python3 web2.py", "clock": "python3 clock.py"})
    _, release = await deploy(stage, app, slug)

    assert release.version == 3
    # web keeps its quantity and size, worker is gone, clock is new and starts at 0.
    assert await stage.formation(app) == {"web": (3, "Standard-2X"), "clock": (0, "Standard-1X")}
    assert stage.api_lines(app) == [
        f"app[api]: Deploy {slug.id[:8]} {BY}",
        f"app[api]: Release v3 created {BY}",
    ]
    assert stage.wakes == 1


class FailingBuilder(Builder):
    """A build that fails the way pip does, after some output (the real one runs pip)."""

    async def build(
        self, app_id: str, slug: Slug, size: DynoSize, config: object = None
    ) -> AsyncIterator[str]:
        yield "-----> Installing requirements with pip"
        raise BuildFailed("pip install failed: see the output above.")


async def test_a_failed_build_removes_the_slug_and_changes_nothing(stage: Stage) -> None:
    app = await stage.deployed_app()
    before = (await stage.releases(app), await stage.formation(app))
    stage.platform.releases.builder = FailingBuilder("python3", stage.root / "builds")
    slug = stage.slug({"web": "python3 other.py"})
    (slug.path / "requirements.txt").write_text("flask\n")

    output: list[object] = []
    with pytest.raises(BuildFailed, match="pip install failed"):
        async for item in stage.platform.releases.deploy(app, slug):
            output.append(item)

    assert output == ["-----> Installing requirements with pip"]
    assert not slug.path.exists()
    assert (await stage.releases(app), await stage.formation(app)) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


async def test_an_upload_is_unpacked_into_a_slug_of_its_procfile(stage: Stage) -> None:
    upload = tarball(
        stage.root / "app.tar.gz", {"Procfile": b"web: python3 web.py\n", "web.py": b"pass\n"}
    )

    slug = await stage.platform.releases.unpack(upload)

    assert slug.processes == {"web": "python3 web.py"}
    assert (slug.path / "web.py").read_bytes() == b"pass\n"
    assert slug.path.parent == stage.slugs_dir


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"web.py": b"pass\n"}, "Procfile"),
        ({"Procfile": b"this is not a procfile\n"}, "Procfile"),
        (None, "not a readable .tar.gz"),
    ],
    ids=["no Procfile", "bad Procfile", "not a tarball"],
)
async def test_a_wrong_upload_leaves_no_slug_and_no_release(
    stage: Stage, files: dict[str, bytes] | None, message: str
) -> None:
    app = await stage.deployed_app()
    before = await stage.releases(app)
    slugs = set(stage.slugs_dir.iterdir())
    upload = stage.root / "upload.tar.gz"
    if files is None:
        upload.write_bytes(b"plain text, not gzip")
    else:
        tarball(upload, files)

    with pytest.raises(UserError, match=message):
        await stage.platform.releases.unpack(upload)

    assert set(stage.slugs_dir.iterdir()) == slugs
    assert await stage.releases(app) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


# -- rollback ----------------------------------------------------------------------------------


async def test_a_rollback_releases_the_old_slug_and_config_again(stage: Stage) -> None:
    app = await stage.deployed_app()  # v2
    await stage.platform.releases.update_config(app, {"MODE": "old"})  # v3
    old = await stage.platform.releases.get(app, "3")
    await deploy(stage, app, stage.slug({"web": "python3 new.py"}))  # v4
    await stage.platform.releases.update_config(app, {"MODE": "new"})  # v5
    await stage.platform.dynos.scale(app, [ScaleChange("web", "=", 2, None)])
    stage.forget(app)

    release = await stage.platform.releases.rollback(app, old)

    assert release.version == 6
    assert release.description == "Rollback to v3"
    assert (release.slug_id, release.processes, release.config) == (
        old.slug_id,
        PROCFILE,
        {"MODE": "old"},
    )
    assert await stage.platform.releases.config(app) == {"MODE": "old"}
    # The formation is fitted to the old slug's types, quantities kept.
    assert await stage.formation(app) == {"web": (2, "Standard-1X"), "worker": (0, "Standard-1X")}
    assert stage.api_lines(app) == [
        f"app[api]: Rollback to v3 {BY}",
        f"app[api]: Release v6 created {BY}",
    ]
    assert stage.wakes == 1
    await stage.settle()
    assert {s.command for s in stage.backend.running.values()} == {"python3 web.py"}


async def test_a_rollback_to_a_release_without_code_changes_nothing(stage: Stage) -> None:
    app = await stage.deployed_app()
    before = (await stage.releases(app), await stage.formation(app))
    initial = await stage.platform.releases.get(app, "1")

    with pytest.raises(UserError, match="Release v1 has no code to roll back to"):
        await stage.platform.releases.rollback(app, initial)

    assert (await stage.releases(app), await stage.formation(app)) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


# -- config vars -------------------------------------------------------------------------------


async def test_setting_and_unsetting_config_vars_makes_one_release(stage: Stage) -> None:
    app = await stage.deployed_app()
    await stage.platform.releases.update_config(app, {"OLD": "1", "KEEP": "k"})
    await stage.platform.dynos.scale(app, [ScaleChange("worker", "=", 1, None)])
    await stage.settle()
    stage.forget(app)

    config = await stage.platform.releases.update_config(app, {"NEW": "2", "OLD": None})

    assert config == {"KEEP": "k", "NEW": "2"}
    current = await stage.platform.releases.current(app)
    assert current is not None
    assert (current.version, current.config) == (4, config)
    assert current.description == "Set NEW config vars and Remove OLD config vars"
    assert current.slug_id is not None and current.processes == PROCFILE  # same code
    assert stage.api_lines(app) == [
        f"app[api]: Set NEW config vars and Remove OLD config vars {BY}",
        f"app[api]: Release v4 created {BY}",
    ]
    assert stage.wakes == 1
    # The dynos restart on the new release, with its config.
    await stage.settle()
    stage.backend.bind("web.1")
    await stage.settle()
    assert "worker.1" in stage.backend.stopped
    assert {s.name: s.env.get("NEW") for s in stage.backend.running.values()} == {
        "web.1": "2",
        "worker.1": "2",
    }


async def test_a_config_change_that_changes_nothing_makes_no_release(stage: Stage) -> None:
    app = await stage.deployed_app()
    await stage.platform.releases.update_config(app, {"A": "1"})
    stage.forget(app)
    before = await stage.releases(app)

    config = await stage.platform.releases.update_config(app, {"A": "1", "NEVER_SET": None})

    assert config == {"A": "1"}
    assert await stage.releases(app) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"1ABC": "x"}, "Invalid config var name '1ABC'"),
        ({"A-B": "x"}, "Invalid config var name 'A-B'"),
        ({"PORT_NUMBER": 5000}, "must be a string or null"),
        ({"GOOD": "yes", "BAD\n": "x"}, "Invalid config var name"),  # none of them is set
    ],
    ids=["starts with a digit", "dash", "not a string", "one wrong among right ones"],
)
async def test_a_wrong_config_var_changes_nothing(
    stage: Stage, changes: dict[str, object], message: str
) -> None:
    app = await stage.deployed_app()
    await stage.platform.releases.update_config(app, {"A": "1"})
    stage.forget(app)
    before = await stage.releases(app)

    with pytest.raises(UserError, match=message):
        await stage.platform.releases.update_config(app, changes)

    assert await stage.platform.releases.config(app) == {"A": "1"}
    assert await stage.releases(app) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0
