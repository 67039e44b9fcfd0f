"""The manager's decisions with a fake backend and a fake clock: no processes, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from dynos.backends.base import DynoEvents
from dynos.core.restart_policy import RestartPolicy
from dynos.logs.hub import LogHub
from dynos.manager.manager import DynoManager, ManagerSettings
from dynos.manager.watch import DynoWatch
from dynos.router.routing_table import RoutingTable
from dynos.store.database import Database
from dynos.store.models import App
from dynos.store.store import Store
from dynos.testing.fakes import FakeBackend, FakeClock

pytestmark = pytest.mark.anyio  # each test gets ``w``, a World (tests/manager/conftest.py)


class World:
    """A manager on a fake backend and clock, with a real store holding the app ``foo``.
    Made by :meth:`open`: the store's thread needs the running loop."""

    app: App

    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.store = store
        self.logs = LogHub()
        self.clock = FakeClock()
        # As the server wires them: a request for a sleeping app wakes it through the manager.
        self.routes = RoutingTable(
            "localhost", clock=self.clock, on_wake=lambda app: self.manager.wake_app(app)
        )
        self.backend: FakeBackend | None = None

        factory = self.backend_for

        settings = ManagerSettings(
            slugs_dir=tmp_path, restart_policy=RestartPolicy(base_delay=1.0, max_delay=8.0)
        )
        self.manager = DynoManager(
            self.store, factory, self.logs, self.routes, settings, clock=self.clock
        )

    @classmethod
    async def open(cls, tmp_path: Path) -> World:
        world = cls(tmp_path, await Store.open(tmp_path / "db"))

        def seed(db: Database) -> App:
            app = db.create_app("foo")
            db.create_release(
                app.id,
                "Deploy",
                slug_id="slug",
                processes={"web": "python3 web.py", "worker": "python3 worker.py"},
                config={"K": "v"},
            )
            return app

        world.app = await world.store.transaction(seed)
        return world

    def backend_for(self, events: DynoEvents) -> FakeBackend:
        self.backend = FakeBackend(events)
        return self.backend

    @property
    def fake(self) -> FakeBackend:
        assert self.backend is not None
        return self.backend

    async def scale(self, web: int, worker: int, size: str = "Standard-1X") -> None:
        def scale(db: Database) -> None:
            db.set_formation(self.app.id, "web", web, size)
            db.set_formation(self.app.id, "worker", worker, "Standard-1X")

        await self.store.transaction(scale)

    async def write(self, change: Callable[[Database], object]) -> None:
        await self.store.transaction(change)

    async def settle(self) -> None:
        """Reconcile, then let spawned stop tasks and their exit events run."""
        for _ in range(5):
            await self.manager.reconcile()
            await asyncio.sleep(0)

    def states(self) -> dict[str, str]:
        return {d.name: str(d.state) for d in self.manager.dynos(self.app.id)}


async def test_web_dyno_is_routed_only_once_it_binds_its_port(w: World) -> None:
    await w.scale(web=1, worker=1)
    await w.settle()
    assert w.states() == {"web.1": "starting", "worker.1": "up"}
    route = w.routes.lookup("foo.localhost")
    assert route is not None and route.endpoints == ()
    w.fake.bind("web.1")
    assert w.states()["web.1"] == "up"
    route = w.routes.lookup("foo.localhost")
    assert route is not None and [b.dyno for b in route.endpoints] == ["web.1"]


async def test_dyno_gets_config_port_and_dyno_name(w: World) -> None:
    await w.scale(web=1, worker=0)
    await w.settle()
    env = w.fake.started[0].env
    assert env["K"] == "v" and env["DYNO"] == "web.1" and env["PORT"] == "40000"


async def test_scale_down_stops_highest_numbered_dynos_first(w: World) -> None:
    await w.scale(web=0, worker=4)
    await w.settle()
    await w.scale(web=0, worker=1)
    await w.settle()
    assert w.fake.stopped == ["worker.4", "worker.3", "worker.2"]
    assert w.fake.replaced == [False, False, False]  # gone: no successor
    assert w.states() == {"worker.1": "up"}


async def test_crash_restarts_at_once_then_backs_off(w: World) -> None:
    await w.scale(web=0, worker=1)
    await w.settle()
    w.fake.crash("worker.1", status=3)
    assert w.states() == {"worker.1": "crashed"}
    await w.settle()
    assert w.states() == {"worker.1": "up"}  # first crash: restarted at once
    w.fake.crash("worker.1", status=3)
    await w.settle()
    assert w.states() == {"worker.1": "crashed"}  # second quick crash: waits 1 s
    w.clock.advance(1.0)
    await w.settle()
    assert w.states() == {"worker.1": "up"}
    lines = [line.format() for line in w.logs.recent("foo", 100)]
    assert any("dynos[worker.1]: Process exited with status 3" in x for x in lines)
    assert any("State changed from up to crashed" in x for x in lines)


async def test_a_web_dyno_whose_port_was_taken_restarts_at_once_on_a_new_port(w: World) -> None:
    await w.scale(web=1, worker=0)
    await w.settle()
    ports = []
    for _ in range(3):  # three quick crashes in a row, none waited for
        [spec] = [s for s in w.fake.running.values() if s.name == "web.1"]
        ports.append(spec.port)
        w.fake.events.dyno_output(spec.key, "OSError: [Errno 98] Address already in use")
        w.fake.crash("web.1", status=1)
        assert w.states() == {"web.1": "crashed"}
        await w.settle()
        assert w.states() == {"web.1": "starting"}
    assert len(set(ports)) == 3  # a new port each time
    lines = [line.format() for line in w.logs.recent("foo", 100)]
    said = f"dynos[web.1]: Port {ports[0]} was taken by another process: a new one at restart"
    assert any(said in x for x in lines)
    [spec] = [s for s in w.fake.running.values() if s.name == "web.1"]
    w.fake.events.dyno_output(spec.key, "OSError: [Errno 98] Address already in use")
    w.fake.crash("web.1", status=1)  # the fourth: the back-off again
    await w.settle()
    assert w.states() == {"web.1": "crashed"}


async def test_all_web_dynos_crashed_marks_the_route_crashed(w: World) -> None:
    await w.scale(web=1, worker=0)
    await w.settle()
    w.fake.bind("web.1")
    w.fake.crash("web.1")
    route = w.routes.lookup("foo.localhost")
    assert route is not None and route.crashed and route.endpoints == ()


async def test_new_release_replaces_every_dyno(w: World) -> None:
    await w.scale(web=0, worker=2)
    await w.settle()
    await w.write(
        lambda db: db.create_release(
            w.app.id, "v3", slug_id="slug2", processes={"worker": "python3 w2.py"}, config={}
        )
    )
    await w.settle()
    assert sorted(w.fake.stopped) == ["worker.1", "worker.2"]
    assert [s.command for s in w.fake.running.values()] == ["python3 w2.py"] * 2


async def test_restart_request_replaces_only_the_named_dyno(w: World) -> None:
    await w.scale(web=0, worker=2)
    await w.settle()
    w.manager.request_restart(w.app.id, "worker.2")
    await w.settle()
    assert w.fake.stopped == ["worker.2"]
    assert w.states() == {"worker.1": "up", "worker.2": "up"}


async def test_a_restarted_dyno_is_never_missing_between_its_process_and_the_next(
    w: World,
) -> None:
    # Seen in clean-clone CI: worker.1 listed up (its replacement's stop under way), then a
    # restart of worker.1 answered 404 in the moment between the old process's exit and the
    # reconcile that starts the new one. The name now stays, down, until the new one starts.
    await w.scale(web=0, worker=1)
    await w.settle()
    old = w.manager.find_dyno(w.app.id, "worker.1")
    w.manager.request_restart(w.app.id, "worker.1")
    await w.manager.reconcile()  # the stop only: the loop starts the successor once woken
    for _ in range(3):
        await asyncio.sleep(0)
    assert w.fake.stopped == ["worker.1"] and w.fake.running == {}
    assert w.states() == {"worker.1": "down"}
    assert w.manager.request_restart(w.app.id, "worker.1")  # found, not NotFound
    await w.settle()
    new = w.manager.find_dyno(w.app.id, "worker.1")
    assert w.states() == {"worker.1": "up"} and new.id != old.id
    assert len(w.fake.running) == 1


async def test_a_crashed_dyno_outdated_by_a_release_is_down_until_its_successor_starts(
    w: World,
) -> None:
    await w.scale(web=0, worker=1)
    await w.settle()
    w.fake.crash("worker.1")
    await w.settle()  # first crash: restarted at once
    w.fake.crash("worker.1")
    await w.settle()
    assert w.states() == {"worker.1": "crashed"}  # second quick crash: waits 1 s
    await w.write(
        lambda db: db.create_release(
            w.app.id, "Deploy", slug_id="slug", processes={"worker": "python3 w2.py"}, config={}
        )
    )
    await w.manager.reconcile()
    assert w.states() == {"worker.1": "down"}  # its name stays while the release rolls
    await w.manager.reconcile()
    assert w.states() == {"worker.1": "up"}
    assert [s.command for s in w.fake.running.values()] == ["python3 w2.py"]


async def test_scaling_down_a_dyno_that_waits_for_its_successor_forgets_it(w: World) -> None:
    await w.scale(web=0, worker=1)
    await w.settle()
    w.manager.request_restart(w.app.id, "worker.1")
    await w.manager.reconcile()
    await asyncio.sleep(0)
    assert w.states() == {"worker.1": "down"}
    await w.scale(web=0, worker=0)
    await w.settle()
    assert w.states() == {} and w.fake.running == {}


async def test_close_stops_every_dyno(w: World) -> None:
    await w.scale(web=0, worker=3)
    await w.settle()
    await w.manager.close()
    assert sorted(w.fake.stopped) == ["worker.1", "worker.2", "worker.3"]
    assert w.fake.running == {}


async def test_a_dyno_whose_start_is_under_way_when_the_server_stops_is_stopped_too(
    w: World,
) -> None:
    """A worker started as a module's server stopped outlived it once (a CI-machine leak)."""
    gate = w.fake.start_gate = asyncio.Event()
    await w.scale(web=0, worker=1)
    reconciling = asyncio.create_task(w.manager.reconcile())
    async with asyncio.timeout(5):
        while w.states() != {"worker.1": "starting"}:
            await asyncio.sleep(0.01)  # the start is under way, waiting at the gate
    assert w.fake.running == {} and not reconciling.done()
    closing = asyncio.create_task(w.manager.close())
    await asyncio.sleep(0)
    gate.set()
    await asyncio.wait_for(closing, 5)
    await reconciling
    assert w.fake.running == {} and w.fake.stopped == ["worker.1"]


async def test_memory_watch_reports_r14_once_a_minute_and_kills_at_r15(w: World) -> None:
    await w.scale(web=0, worker=1)
    await w.settle()
    watch = DynoWatch(w.manager, w.routes, w.clock)
    w.fake.memory["worker.1"] = 700 * 1024 * 1024  # 1X quota: 512 MB
    watch.check()
    w.clock.advance(30)
    watch.check()  # still over quota, but R14 was said less than a minute ago
    lines = [line.message for line in w.logs.recent("foo", 100, dyno="worker.1")]
    assert lines.count("Error R14 (Memory quota exceeded)") == 1
    assert "Process running mem=700M(136.7%)" in lines
    w.fake.memory["worker.1"] = 1100 * 1024 * 1024  # over twice the quota
    watch.check()
    assert w.fake.killed == ["worker.1"]
    lines = [line.message for line in w.logs.recent("foo", 100, dyno="worker.1")]
    assert "Error R15 (Memory quota vastly exceeded)" in lines
    assert w.states() == {"worker.1": "crashed"}


async def test_lone_1x_web_dyno_idles_after_quiet_spell_and_wakes(w: World) -> None:
    await w.scale(web=1, worker=0)
    await w.write(lambda db: db.set_app_setting(w.app.id, "idle_after", 60))
    await w.settle()
    w.fake.bind("web.1")
    watch = DynoWatch(w.manager, w.routes, w.clock)
    w.clock.advance(59)
    watch.check()
    assert w.states() == {"web.1": "up"}
    w.clock.advance(1)
    watch.check()
    await w.settle()
    assert w.states() == {"web.1": "idle"}
    route = w.routes.lookup("foo.localhost")
    assert route is not None and route.idle and route.endpoints == ()
    w.manager.wake_app("foo")
    await w.settle()
    assert w.states() == {"web.1": "starting"}
    w.fake.bind("web.1")
    assert w.states() == {"web.1": "up"}


async def test_two_web_dynos_never_idle(w: World) -> None:
    await w.scale(web=2, worker=0)
    await w.write(lambda db: db.set_app_setting(w.app.id, "idle_after", 60))
    await w.settle()
    w.fake.bind("web.1")
    w.fake.bind("web.2")
    w.clock.advance(3600)
    DynoWatch(w.manager, w.routes, w.clock).check()
    await w.settle()
    assert w.states() == {"web.1": "up", "web.2": "up"}


async def test_cycling_restarts_old_dynos_one_at_a_time(w: World, tmp_path: Path) -> None:
    w.manager = DynoManager(
        w.store,
        w.backend_for,
        w.logs,
        w.routes,
        ManagerSettings(slugs_dir=tmp_path, cycle_after=100.0),
        clock=w.clock,
    )
    await w.scale(web=2, worker=0)
    await w.settle()
    w.fake.bind("web.1")
    w.fake.bind("web.2")
    w.clock.advance(100)
    DynoWatch(w.manager, w.routes, w.clock).check()
    await w.settle()
    assert w.fake.stopped == ["web.1"]  # web.2 keeps serving meanwhile
    assert w.states() == {"web.1": "starting", "web.2": "up"}
    w.fake.bind("web.1")
    await w.settle()
    assert w.fake.stopped == ["web.1", "web.2"]
    assert w.fake.replaced == [True, True]  # each with a successor in its place
    w.fake.bind("web.2")
    assert w.states() == {"web.1": "up", "web.2": "up"}
    cycling = [x.message for x in w.logs.recent("foo", 100) if x.message == "Cycling"]
    assert len(cycling) == 2


async def test_scratch_watch_says_once_that_a_dynos_scratch_is_full(w: World) -> None:
    await w.scale(web=0, worker=1)
    await w.settle()
    watch = DynoWatch(w.manager, w.routes, w.clock)
    mb = 1024 * 1024
    w.fake.scratch["worker.1"] = (512 * mb, 512 * mb)
    watch.check()
    watch.check()
    lines = [line.message for line in w.logs.recent("foo", 100, dyno="worker.1")]
    full = [line for line in lines if line.startswith("Error: scratch space full")]
    assert full == [full[0]] and "(512M of 512M)" in full[0]
    assert w.states() == {"worker.1": "up"}  # a full scratch is the app's to handle


async def test_destroying_an_app_releases_what_the_backend_held_for_it(w: World) -> None:
    await w.scale(web=0, worker=1)
    await w.settle()
    await w.write(lambda db: db.delete_app(w.app.id))
    await w.settle()
    assert w.manager.dynos(w.app.id) == []
    await w.manager.release_app(w.app.id)
    assert w.fake.released == [w.app.id]


async def test_a_dyno_whose_start_raises_a_bug_crashes_alone(w: World) -> None:
    """A config var with a NUL (stored before the API refused them) makes a real spawn raise
    ValueError: that dyno crashes, the reconcile goes on and the other app's dynos start."""

    def seed(db: Database) -> App:
        app = db.create_app("nul")
        db.create_release(
            app.id, "Deploy", slug_id="slug", processes={"worker": "w"}, config={"K": "a\0b"}
        )
        db.set_formation(app.id, "worker", 1, "Standard-1X")
        return app

    nul = await w.store.transaction(seed)
    await w.scale(web=0, worker=1)
    await w.settle()  # raised ValueError out of reconcile() before
    assert w.states() == {"worker.1": "up"}
    assert [str(d.state) for d in w.manager.dynos(nul.id)] == ["crashed"]
    lines = [line.message for line in w.logs.recent("nul", 100, dyno="worker.1")]
    assert "The dyno could not be started (an internal error: see the server's log)." in lines
