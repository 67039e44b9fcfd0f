"""Add-ons that cannot be created leave nothing behind: no record, release, process or data."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path

import pytest
import redis

from dynos.core.redis_plans import service_for
from dynos.core.release_phase import ReleaseStatus
from dynos.core.swarm_guard import ADDON_PORTS
from dynos.errors import PlatformError, UserError
from dynos.platform.addons import Addons
from dynos.platform.platform import Platform, local_account
from dynos.platform.redis_server import redis_url
from dynos.store.database import Database
from dynos.store.models import Addon, Release
from tests.manager.test_manager import World

pytestmark = pytest.mark.anyio


def addons_of(world: World, tmp_path: Path) -> Addons:
    platform = Platform(world.store, world.manager, world.logs, tmp_path, local_account())
    return Addons(platform, tmp_path / "addons")


async def nothing_created(world: World, tmp_path: Path) -> None:
    assert await world.store.list_addons() == []
    assert [r.description for r in await world.store.list_releases(world.app.id)] == ["Deploy"]
    assert list((tmp_path / "addons").glob("*")) == []


async def test_missing_redis_server_is_an_error_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dynos.platform.redis_server.shutil.which", lambda *a, **k: None)

    world = await World.open(tmp_path)
    with pytest.raises(PlatformError, match="apt-get install -y redis-server"):
        await addons_of(world, tmp_path).create(world.app, "redis")
    await nothing_created(world, tmp_path)
    await world.store.close()


async def test_a_redis_server_that_fails_to_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    world = await World.open(tmp_path)
    with pytest.raises(PlatformError, match="FATAL CONFIG FILE ERROR"):
        await addons_of(world, tmp_path).create(world.app, "redis")
    await nothing_created(world, tmp_path)
    await world.store.close()


def test_add_on_kinds_are_redis_under_its_own_and_heroku_names() -> None:
    assert service_for("redis") == service_for("heroku-redis:mini") == "redis"
    with pytest.raises(UserError, match="Unknown add-on 'memcached'"):
        service_for("memcached")


@pytest.mark.parametrize("name", ["../../escape", "<absolute>", "Cache", "x", "end-", "a\nb"])
async def test_a_malformed_add_on_name_is_refused_before_anything_starts(
    tmp_path: Path, name: str
) -> None:
    # The name is a directory under <home>/addons: "../../escape" or an absolute path would
    # put the add-on's data (and its removal on failure) anywhere.
    name = name.replace("<absolute>", str(tmp_path / "absolute"))

    world = await World.open(tmp_path)
    with pytest.raises(UserError, match="Invalid add-on name"):
        await addons_of(world, tmp_path).create(world.app, "redis", name)
    await nothing_created(world, tmp_path)
    await world.store.close()

    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "absolute").exists()


async def test_an_unknown_plan_is_refused_with_the_plans_named(tmp_path: Path) -> None:
    world = await World.open(tmp_path)
    with pytest.raises(UserError, match=r"Unknown Redis plan 'premium-99'.*mini \(25 MB\)"):
        await addons_of(world, tmp_path).create(world.app, "heroku-redis:premium-99")
    await nothing_created(world, tmp_path)
    await world.store.close()


async def moved_addon(
    tmp_path: Path, recorded: socket.socket | None, first: range, then: range
) -> tuple[int, int, World]:
    """A Redis add-on made on a port of ``first``, holding a key, its server stopped; started
    again by a new Addons that must use ``then``, while ``recorded`` (a listener) holds its
    old port. Returns the old and the new port, the store open."""
    world = await World.open(tmp_path)
    platform = Platform(world.store, world.manager, world.logs, tmp_path, local_account())
    made = Addons(platform, tmp_path / "addons", ports=first)
    addon = await made.create(world.app, "redis")
    client = redis.Redis(port=addon.port, password=addon.password)
    client.set("kept", "yes")
    client.close()
    await made.close()
    if recorded is not None:
        recorded.bind(("127.0.0.1", addon.port))
        recorded.listen()
    again = Addons(platform, tmp_path / "addons", ports=then)
    await again.start()
    try:
        [moved] = await world.store.list_addons()
        client = redis.Redis(port=moved.port, password=moved.password)
        assert client.get("kept") == b"yes"  # the same data, on the new port
        client.close()
        # A new password: the old one may have gone to whatever holds the old port.
        assert moved.password != addon.password
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=moved.port, password=addon.password).ping()
        current = await world.store.current_release(world.app.id)
        assert current is not None and current.description == "Update REDIS by heroku-redis"
        assert current.config["REDIS_URL"] == redis_url(moved.port, moved.password)
        said = [line.message for line in world.logs.recent("foo", 100)]
        assert any(f"moved to port {moved.port}: port {addon.port}" in m for m in said), said
    finally:
        await again.close()
    return addon.port, moved.port, world


async def test_a_redis_whose_port_another_process_took_moves_and_its_app_is_released(
    tmp_path: Path,
) -> None:
    """Before, it was started on the taken port again and again, and never came up."""
    with socket.socket() as holder:
        old, new, world = await moved_addon(tmp_path, holder, ADDON_PORTS, ADDON_PORTS)
    assert new != old and new in ADDON_PORTS
    await world.store.close()


async def test_a_squatter_that_answers_as_redis_would_is_not_taken_for_it(
    tmp_path: Path,
) -> None:
    """It takes any password and answers PING: the start checks the process id the server
    gives, and moves on once its own redis-server failed on the port."""
    with socket.socket() as squatter:
        answering = threading.Event()

        def answer() -> None:
            squatter.settimeout(0.2)
            while not answering.is_set():
                with contextlib.suppress(TimeoutError):
                    conn, _ = squatter.accept()
                    with conn:
                        conn.sendall(b"+OK\r\n+PONG\r\n")

        squatting = threading.Thread(target=answer)
        world = await World.open(tmp_path)
        platform = Platform(world.store, world.manager, world.logs, tmp_path, local_account())
        made = Addons(platform, tmp_path / "addons", ports=ADDON_PORTS)
        addon = await made.create(world.app, "redis")
        await made.close()
        squatter.bind(("127.0.0.1", addon.port))
        squatter.listen()
        squatting.start()
        again = Addons(platform, tmp_path / "addons", ports=ADDON_PORTS)
        try:
            await again.start()
            [moved] = await world.store.list_addons()
            assert moved.port != addon.port
            assert redis.Redis(port=moved.port, password=moved.password).ping()
        finally:
            answering.set()
            squatting.join()
            await again.close()
            await world.store.close()


async def test_a_redis_outside_the_swarm_s_add_on_ports_moves_into_them(tmp_path: Path) -> None:
    """A home that ran another backend before --backend swarm: no task reaches its port."""
    old, new, world = await moved_addon(tmp_path, None, range(19000, 19500), range(19500, 20000))
    assert old in range(19000, 19500) and new in range(19500, 20000)
    await world.store.close()


async def test_a_move_while_the_app_s_release_command_runs_is_recorded_once_it_ended(
    tmp_path: Path,
) -> None:
    """A release meanwhile is refused: the server runs on its new port at once, its record
    and the app's release follow the release command's end (the dynos keep the old URL)."""
    world = await World.open(tmp_path)
    platform = Platform(world.store, world.manager, world.logs, tmp_path, local_account())
    made = Addons(platform, tmp_path / "addons", ports=ADDON_PORTS)
    addon = await made.create(world.app, "redis")
    await made.close()

    def pending(db: Database) -> Release:
        live = db.current_release(world.app.id)
        assert live is not None
        return db.create_release(
            world.app.id,
            "Deploy",
            slug_id=live.slug_id,
            processes={"release": "sleep 60"},
            config=live.config,
            status=ReleaseStatus.PENDING,
        )

    running = await world.store.transaction(pending)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", addon.port))
        holder.listen()
        again = Addons(platform, tmp_path / "addons", ports=ADDON_PORTS)
        try:
            await again.start()
            said = "\n".join(line.message for line in world.logs.recent("foo", 100))
            assert "moved to port" in said, said
            assert [a.port for a in await world.store.list_addons()] == [addon.port]  # not yet
            await world.store.call(Database.set_release_status, running.id, ReleaseStatus.FAILED)

            async def recorded() -> Addon:
                while True:
                    [moved] = await world.store.list_addons()
                    if moved.port != addon.port:
                        return moved
                    await asyncio.sleep(0.1)

            moved = await asyncio.wait_for(recorded(), 30)
            current = await world.store.current_release(world.app.id)
            assert current is not None and current.description == "Update REDIS by heroku-redis"
            assert current.config["REDIS_URL"] == redis_url(moved.port, moved.password)
            assert redis.Redis(port=moved.port, password=moved.password).ping()
        finally:
            await again.close()
            await world.store.close()
