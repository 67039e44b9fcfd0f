"""Preboot through the manager, on the fake backend and clock: the old web dynos serve under
retired names while the new ones boot out of the router; one switch; the failure paths."""

from __future__ import annotations

import pytest

from dynos.store.database import Database
from tests.manager.test_manager import World

pytestmark = pytest.mark.anyio


def newest_key(w: World, name: str) -> str:
    """The backend key of the newest running process started as ``name``."""
    return [s.key for s in w.fake.started if s.name == name and s.key in w.fake.running][-1]


def routed(w: World) -> list[str]:
    route = w.routes.lookup("foo.localhost")
    assert route is not None
    return [e.dyno for e in route.endpoints]


async def serving_with_preboot(w: World) -> None:
    await w.scale(web=2, worker=0)
    await w.settle()
    for name in ("web.1", "web.2"):
        w.fake.bind(name)
    await w.write(lambda db: db.set_app_feature(w.app.id, "preboot", True))
    await w.settle()
    assert w.states() == {"web.1": "up", "web.2": "up"}


async def new_release(w: World) -> None:
    def release(db: Database) -> None:
        db.create_release(
            w.app.id, "Set K", slug_id="slug", processes={"web": "python3 web.py"}, config={}
        )

    await w.write(release)
    await w.settle()


async def test_new_dynos_boot_beside_the_old_and_take_traffic_all_at_once(w: World) -> None:
    await serving_with_preboot(w)
    await new_release(w)
    assert w.states() == {
        "web.1": "starting",
        "web.1.v1": "up",
        "web.2": "starting",
        "web.2.v1": "up",
    }
    assert routed(w) == ["web.1.v1", "web.2.v1"]
    assert w.fake.stopped == []
    w.fake.events.dyno_up(newest_key(w, "web.1"))
    await w.settle()
    # Up, but held: the other new dyno has not passed yet.
    assert w.states()["web.1"] == "up" and routed(w) == ["web.1.v1", "web.2.v1"]
    w.fake.events.dyno_up(newest_key(w, "web.2"))
    await w.settle()
    assert routed(w) == ["web.1", "web.2"]
    assert w.states() == {"web.1": "up", "web.2": "up"}
    assert sorted(w.fake.stopped) == ["web.1", "web.2"]  # the old processes (named web.N)
    assert {d.release_version for d in w.manager.dynos(w.app.id)} == {2}
    lines = [line.format() for line in w.logs.recent("foo", 100)]
    assert any("Preboot of v2: starting beside web.1.v1, web.2.v1" in x for x in lines)
    assert any("dynos[web.1.v1]: Stopping all processes with SIGTERM" in x for x in lines)


async def test_a_new_dyno_that_crashes_leaves_the_old_ones_serving_under_their_names(
    w: World,
) -> None:
    await serving_with_preboot(w)
    await new_release(w)
    w.fake.events.dyno_up(newest_key(w, "web.1"))
    crashed = newest_key(w, "web.2")
    del w.fake.running[crashed]
    w.fake.events.dyno_exited(crashed, 1)
    await w.settle()
    assert w.states() == {"web.1": "up", "web.2": "up"}
    assert {d.release_version for d in w.manager.dynos(w.app.id)} == {1}
    assert routed(w) == ["web.1", "web.2"]
    lines = [line.format() for line in w.logs.recent("foo", 200)]
    assert any(
        "Preboot failed: web.2 exited before passing its health checks; the old web dynos "
        "serve on" in x
        for x in lines
    )
    # The failed release is not prebooted again by itself.
    started = len(w.fake.started)
    w.clock.advance(60)
    await w.settle()
    assert len(w.fake.started) == started


async def test_new_dynos_not_up_by_the_deadline_fail_the_preboot(w: World) -> None:
    await serving_with_preboot(w)
    await new_release(w)
    w.fake.events.dyno_up(newest_key(w, "web.1"))
    w.clock.advance(w.manager.settings.boot_timeout + 10)
    await w.settle()
    assert w.states() == {"web.1": "up", "web.2": "up"}
    assert {d.release_version for d in w.manager.dynos(w.app.id)} == {1}
    lines = [line.format() for line in w.logs.recent("foo", 200)]
    assert any("web.2 did not pass its health checks in time" in x for x in lines)


async def test_without_preboot_web_dynos_still_roll_one_at_a_time(w: World) -> None:
    await w.scale(web=2, worker=0)
    await w.settle()
    for name in ("web.1", "web.2"):
        w.fake.bind(name)
    await new_release(w)
    assert w.fake.stopped == ["web.1"]  # rolled, not prebooted
    assert set(w.states()) == {"web.1", "web.2"}
