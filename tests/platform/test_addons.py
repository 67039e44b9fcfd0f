"""Add-ons that cannot be created leave nothing behind: no record, release, process or data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dynos.errors import PlatformError, UserError
from dynos.platform.addons import Addons, service_for
from dynos.platform.platform import Platform, local_account
from tests.manager.test_manager import World


def addons_of(world: World, tmp_path: Path) -> Addons:
    platform = Platform(world.store, world.manager, world.logs, tmp_path, local_account())
    return Addons(platform, tmp_path / "addons")


async def nothing_created(world: World, tmp_path: Path) -> None:
    assert await world.store.list_addons() == []
    assert [r.description for r in await world.store.list_releases(world.app.id)] == ["Deploy"]
    assert list((tmp_path / "addons").glob("*")) == []


def test_missing_redis_server_is_an_error_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dynos.platform.redis_server.shutil.which", lambda *a, **k: None)

    async def scenario() -> None:
        world = await World.open(tmp_path)
        with pytest.raises(PlatformError, match="apt-get install -y redis-server"):
            await addons_of(world, tmp_path).create(world.app, "redis")
        await nothing_created(world, tmp_path)
        await world.store.close()

    asyncio.run(scenario())


def test_a_redis_server_that_fails_to_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    async def scenario() -> None:
        world = await World.open(tmp_path)
        with pytest.raises(PlatformError, match="FATAL CONFIG FILE ERROR"):
            await addons_of(world, tmp_path).create(world.app, "redis")
        await nothing_created(world, tmp_path)
        await world.store.close()

    asyncio.run(scenario())


def test_add_on_kinds_are_redis_under_its_own_and_heroku_names() -> None:
    assert service_for("redis") == service_for("heroku-redis:mini") == "redis"
    with pytest.raises(UserError, match="Unknown add-on 'memcached'"):
        service_for("memcached")
