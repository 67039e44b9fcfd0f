"""The platform in process: a real store (SQLite in a temporary file), a manager on the fake
backend and a fake clock, a log hub, and the Platform over them. No sockets, no processes.

:func:`open_stage` makes one inside the running event loop (the store's thread needs it);
tests of the API put :class:`~dynos.api.routes.Api` in front of ``stage.platform``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from dynos.backends.base import DynoEvents
from dynos.core.restart_policy import RestartPolicy
from dynos.logs.hub import LogHub
from dynos.manager.manager import DynoManager, ManagerSettings
from dynos.platform.build import Slug
from dynos.platform.context import Account
from dynos.platform.platform import Platform
from dynos.router.routing_table import RoutingTable
from dynos.store.models import App, Formation, Release
from dynos.store.store import Store
from dynos.testing.fakes import FakeBackend, FakeClock

ACCOUNT = Account("00000000-0000-4000-8000-0000000000aa", "alice@example.com")
PROCFILE = {"web": "python3 web.py", "worker": "python3 worker.py"}


class Stage:
    """What a test drives (``platform``) and what it looks at afterwards: the store, the
    manager's dynos on the fake backend, the ``app[api]`` log lines and the manager's wakes."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store
        self.logs = LogHub()
        self.clock = FakeClock()
        self.routes = RoutingTable(
            "localhost", clock=self.clock, on_wake=lambda app: self.manager.wake_app(app)
        )
        self._backend: FakeBackend | None = None
        settings = ManagerSettings(
            slugs_dir=root / "slugs", restart_policy=RestartPolicy(base_delay=1.0, max_delay=8.0)
        )
        self.manager = DynoManager(
            store, self._backend_for, self.logs, self.routes, settings, clock=self.clock
        )
        self.wakes = 0
        self._seen: dict[str, int] = {}
        wake = self.manager.wake

        def counted_wake() -> None:
            # Counted, then the real thing: a use-case "wakes the manager" exactly when this
            # moves, and the manager's own wake-up event is still set.
            self.wakes += 1
            wake()

        self.manager.wake = counted_wake  # type: ignore[method-assign]
        self.platform = Platform(store, self.manager, self.logs, root / "slugs", ACCOUNT)

    def _backend_for(self, events: DynoEvents) -> FakeBackend:
        self._backend = FakeBackend(events)
        return self._backend

    @property
    def backend(self) -> FakeBackend:
        assert self._backend is not None, "the manager has not made its backend yet"
        return self._backend

    # -- arranging -------------------------------------------------------------------------------

    def slug(self, processes: dict[str, str] | None = None) -> Slug:
        """An unpacked slug in the slugs directory that needs no build (no requirements.txt)."""
        slug_id = str(uuid.uuid4())
        path = self.slugs_dir / slug_id
        path.mkdir(parents=True)
        (path / "web.py").write_text("print('hi')\n")
        return Slug(slug_id, path, dict(processes or PROCFILE))

    async def deployed_app(
        self, name: str = "shop", processes: dict[str, str] | None = None
    ) -> App:
        """A new app with one deploy (v2), then forget what that logged and woke."""
        app = await self.platform.create_app(name)
        await deploy(self, app, self.slug(processes))
        self.forget(app)
        return app

    def forget(self, app: App) -> None:
        """Start counting ``app``'s ``app[api]`` lines, and the wakes, afresh."""
        self._seen[app.name] = len(self._all_api_lines(app))
        self.wakes = 0

    # -- looking ---------------------------------------------------------------------------------

    @property
    def slugs_dir(self) -> Path:
        return self.root / "slugs"

    def api_lines(self, app: App) -> list[str]:
        """The ``app[api]`` lines logged for ``app`` since :meth:`forget`, oldest first."""
        return self._all_api_lines(app)[self._seen.get(app.name, 0) :]

    def _all_api_lines(self, app: App) -> list[str]:
        lines = self.logs.recent(app.name, 1000, source="app", dyno="api")
        return [line.format().split(" ", 1)[1] for line in lines]

    async def formation(self, app: App) -> dict[str, tuple[int, str]]:
        return {f.type: (f.quantity, f.size.name) for f in await self.store.formation(app.id)}

    async def releases(self, app: App) -> list[tuple[int, str]]:
        return [(r.version, r.description) for r in await self.store.list_releases(app.id)]

    async def settle(self) -> None:
        """Let the manager act on the desired state: reconcile, and let the fake backend's
        start and stop tasks run."""
        for _ in range(5):
            await self.manager.reconcile()
            await asyncio.sleep(0)

    def dynos(self, app: App) -> dict[str, str]:
        return {d.name: str(d.state) for d in self.manager.dynos(app.id)}


async def deploy(stage: Stage, app: App, slug: Slug) -> tuple[list[str], Release]:
    """Run ``platform.releases.deploy`` to its end: the output lines and the release."""
    output: list[str] = []
    released: Release | None = None
    async for item in stage.platform.releases.deploy(app, slug):
        if isinstance(item, str):
            output.append(item)
        else:
            released = item
    assert released is not None
    return output, released


def by_type(formation: list[Formation]) -> dict[str, tuple[int, str]]:
    return {f.type: (f.quantity, f.size.name) for f in formation}


@asynccontextmanager
async def open_stage(root: Path) -> AsyncIterator[Stage]:
    store = await Store.open(root / "dynos.db")
    try:
        yield Stage(root, store)
    finally:
        await store.close()
