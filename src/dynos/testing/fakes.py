"""Fakes shipped with the package, for tests of the manager and of later backends' users.

``FakeBackend`` runs nothing: it records what it was asked to start and stop and lets a test
say when a dyno comes up or exits. ``FakeClock`` is a clock a test moves by hand.
"""

from __future__ import annotations

import asyncio
import itertools

from dynos.backends.base import HERE, DynoEvents, DynoSpec, DynoUsage, Placement


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeBackend:
    def __init__(self, events: DynoEvents) -> None:
        self.events = events
        self.running: dict[str, DynoSpec] = {}  # key -> spec
        self.started: list[DynoSpec] = []
        self.stopped: list[str] = []  # dyno names, in the order they were stopped
        self.replaced: list[bool] = []  # for each of those, whether a successor was to start
        self.memory: dict[str, int] = {}  # dyno name -> resident bytes a test says it uses
        self.cpu: dict[str, float] = {}  # dyno name -> CPU seconds a test says it used
        self.killed: list[str] = []  # dyno names SIGKILLed by the memory watch
        self.scratch: dict[str, tuple[int, int]] = {}  # dyno name -> (used, cap) a test says
        self.released: list[str] = []  # app ids whose resources were released
        self._ports = itertools.count(40000)
        self.start_gate: asyncio.Event | None = None  # set: each start waits for it first

    def allocate_port(self) -> int:
        return next(self._ports)

    def address(self, key: str) -> str | None:
        return "127.0.0.1" if key in self.running else None

    async def close(self, grace: float) -> None:
        self.running.clear()

    def placement(self, key: str) -> Placement:
        return HERE

    async def start(self, spec: DynoSpec) -> None:
        if self.start_gate is not None:
            await self.start_gate.wait()
        if any("\0" in value for value in spec.env.values()):
            raise ValueError("embedded null byte")  # as a real spawn's os.fsencode does
        self.running[spec.key] = spec
        self.started.append(spec)
        if spec.port is None:
            self.events.dyno_up(spec.key)

    async def stop(self, key: str, grace: float, *, replaced: bool = False) -> bool:
        spec = self.running.pop(key, None)
        if spec is not None:
            self.stopped.append(spec.name)
            self.replaced.append(replaced)
            self.events.dyno_exited(key, 143)
        return False

    def memory_used(self, key: str) -> int | None:
        spec = self.running.get(key)
        return None if spec is None else self.memory.get(spec.name, 0)

    def usage(self, key: str) -> DynoUsage | None:
        spec = self.running.get(key)
        if spec is None:
            return None
        return DynoUsage(self.memory.get(spec.name, 0), cpu_seconds=self.cpu.get(spec.name, 0.0))

    def kill(self, key: str) -> None:
        spec = self.running.pop(key, None)
        if spec is not None:
            self.killed.append(spec.name)
            self.events.dyno_exited(key, 137)

    def scratch_usage(self, key: str) -> tuple[int, int] | None:
        spec = self.running.get(key)
        return None if spec is None else self.scratch.get(spec.name)

    async def release_app(self, app_id: str) -> None:
        self.released.append(app_id)

    # -- what a test says happened ---------------------------------------------------------

    def key_of(self, name: str) -> str:
        return next(k for k, s in self.running.items() if s.name == name)

    def bind(self, name: str) -> None:
        """The web dyno ``name`` now accepts connections on its PORT."""
        self.events.dyno_up(self.key_of(name))

    def crash(self, name: str, status: int = 1) -> None:
        key = self.key_of(name)
        del self.running[key]
        self.events.dyno_exited(key, status)
