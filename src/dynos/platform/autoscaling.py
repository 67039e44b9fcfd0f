"""Autoscaling: each process type's policy (enable, disable, show), and the worker
autoscalers that carry it out (core/autoscaling.py decides; this module reads and acts).

A worker type's autoscaler reads its queues' depth from the app's Redis add-on (``REDIS_URL``
of the live release): the lengths of the lists that hold waiting jobs, plus RQ's running
jobs. It does not poll Redis in a tight loop: the add-on's redis-server publishes keyspace
events for list commands (platform/redis_server.py), and the autoscaler reads the depth as
soon as a job is pushed, else every ``IDLE_READ`` seconds (every ``COOLING_READ`` while a
cooldown runs, so that the scale-down lands when it ends). A decision is a formation change,
logged as an ``app[autoscaler]`` line with the depth, the target and the new quantity. A
scale-up is capped at what the host's memory holds (every dyno's quota), with a ``capacity``
line saying so (core/autoscaling.py ``host_room``).

A web type's autoscaler samples the router's view of the app every ``SAMPLE_EVERY`` seconds
(one: platform/metrics.py ``web_window`` reads the metrics' one-second slots, no store): the
p95 of the service or queue time over the stable and panic windows, the requests arrived and
answered per second over the last ``RATE_WINDOW`` seconds, the requests the router holds now
and those it gave up on lately; and hands it to the rules of core/autoscaling.py, with how
many of the type's dynos are still starting.

A manual ``ps:scale`` of a type's quantity turns its autoscaling off until it is enabled
again (:meth:`Autoscaling.overridden_by`), and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psutil

from dynos.core.autoscaling import (
    RATE_WINDOW,
    SAMPLE_EVERY,
    Decision,
    HostRoom,
    WebAutoscaler,
    WebSample,
    WorkerAutoscaler,
    host_room,
)
from dynos.core.autoscaling_policy import (
    WebMetric,
    WebPolicy,
    WorkerPolicy,
    parse_policy,
    queue_keys,
)
from dynos.core.metrics import WebWindow
from dynos.core.scale import ScaleChange
from dynos.core.states import DynoState
from dynos.errors import NotFound
from dynos.logs.logline import APP
from dynos.platform.context import Services, api_log
from dynos.platform.dynos import Dynos
from dynos.store.database import Database
from dynos.store.models import App

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)

IDLE_READ = 5.0  # seconds between depth reads with no keyspace event
COOLING_READ = 1.0  # while a scale-down's cooldown runs
RETRY = 5.0  # seconds before a watch that lost Redis (or has none) tries again
KEPT_DECISIONS = 20  # per type, for ``ps:autoscale``
STABLE_WINDOW = 60  # seconds of the web autoscaler's stable p95 (Knative's stable window)
PANIC_WINDOW = 10  # seconds of its panic p95, and of the requests that failed
REDIS_URL = "REDIS_URL"


@dataclass
class TypeState:
    """One type's policy and what its autoscaler last decided or said."""

    policy: WebPolicy | WorkerPolicy
    decisions: deque[tuple[float, Decision]] = field(
        default_factory=lambda: deque(maxlen=KEPT_DECISIONS)
    )
    status: str = "starting"  # "watching rq:default", "no REDIS_URL", ...
    # How many fitted at the last capacity line: said once while capped there, not at every
    # reading (the depth, and so the quantity wanted, moves while the jobs run)
    capacity_capped: int | None = None


class Autoscaling:
    def __init__(
        self,
        services: Services,
        dynos: Dynos,
        web_window: Callable[[str, int], WebWindow],
        sample_every: float = SAMPLE_EVERY,
    ) -> None:
        self._services = services
        self._store = services.store
        self._dynos = dynos
        self._web_window = web_window  # (app name, seconds): the router's view of its web
        self._sample_every = sample_every
        self._states: dict[tuple[str, str], TypeState] = {}
        self._watches: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running = False

    # -- what the API asks ---------------------------------------------------------------------

    async def enable(self, app: App, type_: str, body: Mapping[str, object]) -> TypeState:
        """Turn on (or change) ``type_``'s autoscaling; UserError, nothing changed, when
        ``body`` is not a policy or the type is not in the formation."""
        policy = parse_policy(type_, body)
        await self._dynos.formation_entry(app, type_)  # NotFound for a type not in the Procfile

        def save(db: Database) -> None:
            db.set_autoscaling(app.id, type_, policy)

        await self._store.transaction(save)
        api_log(self._services, app, f"Enable autoscaling of {type_}")
        state = self._states[(app.id, type_)] = TypeState(policy)
        self._start_watch(app.id, type_, policy)
        return state

    async def disable(self, app: App, type_: str) -> None:
        """Turn ``type_``'s autoscaling off; NotFound when it was not on."""
        if not await self._store.transaction(lambda db: db.delete_autoscaling(app.id, type_)):
            raise NotFound(f"Autoscaling of {type_} is not on for {app.name}.")
        self._stop_watch(app.id, type_)
        api_log(self._services, app, f"Disable autoscaling of {type_}")

    async def show(self, app: App) -> list[tuple[str, TypeState]]:
        rows = await self._store.call(Database.autoscaling, app.id)
        return [
            (row.type, self._states.get((app.id, row.type)) or TypeState(row.policy))
            for row in rows
        ]

    async def overridden_by(self, app: App, changes: list[ScaleChange]) -> list[str]:
        """After a manual ``ps:scale``: the types whose quantity it set, turned off."""
        scaled = {change.type for change in changes if change.op is not None}

        def turn_off(db: Database) -> list[str]:
            rows = [row for row in db.autoscaling(app.id) if row.type in scaled]
            for row in rows:
                db.delete_autoscaling(app.id, row.type)
            return [row.type for row in rows]

        off = await self._store.transaction(turn_off)
        for type_ in off:
            self._stop_watch(app.id, type_)
            api_log(self._services, app, f"Disable autoscaling of {type_} (ps:scale)")
        return off

    # -- the watches ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Start a watch for every stored worker policy; they run until the server stops."""
        self._running = True
        for row in await self._store.call(Database.autoscaling, None):
            self._states[(row.app_id, row.type)] = TypeState(row.policy)
            self._start_watch(row.app_id, row.type, row.policy)
        try:
            await asyncio.Event().wait()
        finally:
            for key in list(self._watches):
                self._stop_watch(*key)

    def _start_watch(self, app_id: str, type_: str, policy: WebPolicy | WorkerPolicy) -> None:
        self._stop_watch(app_id, type_)
        if not self._running:
            return
        if isinstance(policy, WorkerPolicy):
            task = asyncio.create_task(self._watch(app_id, type_, policy))
        else:
            task = asyncio.create_task(self._watch_web(app_id, type_, policy))
        self._watches[(app_id, type_)] = task

    def _stop_watch(self, app_id: str, type_: str) -> None:
        task = self._watches.pop((app_id, type_), None)
        if task is not None:
            task.cancel()

    async def _watch(self, app_id: str, type_: str, policy: WorkerPolicy) -> None:
        # redis (0.15 s of imports) is loaded by the first worker watch, not at every start.
        from redis.exceptions import RedisError

        state = self._states.setdefault((app_id, type_), TypeState(policy))
        autoscaler = WorkerAutoscaler(policy)
        while True:
            url = await self._redis_url(app_id)
            if url is None:
                state.status = f"no {REDIS_URL}: add a Redis add-on (dynos addons:create redis)"
                await asyncio.sleep(RETRY)
                continue
            try:
                await self._follow(app_id, type_, url, autoscaler, state)
            except (RedisError, OSError) as exc:
                state.status = f"Redis unreachable ({exc}); trying again"
                await asyncio.sleep(RETRY)
            except Exception:  # a bug must not end the watch for good: said, and retried
                log.exception("autoscaling of %s's %s failed; retrying", app_id, type_)
                state.status = "failed (the server's log has why); trying again"
                await asyncio.sleep(RETRY)

    async def _watch_web(self, app_id: str, type_: str, policy: WebPolicy) -> None:
        state = self._states.setdefault((app_id, type_), TypeState(policy))
        autoscaler = WebAutoscaler(policy)
        state.status = f"watching {policy.metric.value} (target {policy.target_ms:g} ms)"
        while True:
            await asyncio.sleep(self._sample_every)
            try:
                app = await self._store.get_app(app_id)  # by id: its name may have changed
                sample = self._web_sample(app.name, policy.metric)
                dynos = [d for d in self._dynos.list(app) if d.type == type_]
                quantity = await self._quantity(app_id, type_)
                if quantity is None:
                    return  # the type is gone with its Procfile line
                # Not up yet: starting, or not even made yet (the manager's next turn makes
                # the records of a scale-up; until then they would read as up, and a dyno's
                # capacity as what the few up answered over all of them).
                present = [d for d in dynos if d.state is not DynoState.DOWN]
                starting = sum(1 for d in present if d.state is DynoState.STARTING)
                starting += max(0, quantity - len(present))
                decision = autoscaler.observe(sample, quantity, starting)
                if decision is not None:
                    await self._apply(app_id, type_, decision, state)
            except NotFound:
                return  # the app is gone: its rows went with it
            except Exception:  # a bug must not end the watch for good: said, and retried
                log.exception("autoscaling of %s's %s failed; retrying", app_id, type_)
                state.status = "failed (the server's log has why); trying again"

    def _web_sample(self, app_name: str, metric: WebMetric) -> WebSample:
        stable = self._web_window(app_name, STABLE_WINDOW)
        panic = self._web_window(app_name, PANIC_WINDOW)
        now = self._web_window(app_name, RATE_WINDOW)
        if metric is WebMetric.RESPONSE_TIME:
            stable_ms, panic_ms = stable.p95_ms, panic.p95_ms
        else:
            stable_ms, panic_ms = stable.queue_p95_ms, panic.queue_p95_ms
        return WebSample(
            time.monotonic(),
            stable_ms,
            panic_ms,
            now.arrivals,
            now.answered,
            in_flight=now.in_flight,
            failed=panic.failed,
            busy=now.busy,
        )

    async def _follow(
        self, app_id: str, type_: str, url: str, autoscaler: WorkerAutoscaler, state: TypeState
    ) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        policy = autoscaler.policy
        waiting = [key for queue in policy.queues for key in queue_keys(queue)[0]]
        running = [key for queue in policy.queues for key in queue_keys(queue)[1]]
        database = urlsplit(url).path.strip("/") or "0"
        client = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*(f"__keyspace@{database}__:{key}" for key in waiting))
            state.status = f"watching {', '.join(policy.queues)}"
            while True:
                depth = await _depth(client, waiting, running)
                quantity = await self._quantity(app_id, type_)
                if quantity is None:
                    return  # the app or the type is gone: its rows went with it
                decision = autoscaler.observe(time.monotonic(), depth, quantity)
                if decision is not None:
                    await self._apply(app_id, type_, decision, state)
                wait = COOLING_READ if autoscaler.fewer_since is not None else IDLE_READ
                if await pubsub.get_message(timeout=wait) is not None:
                    # One read for a burst of pushes: the events already here are spent.
                    while await pubsub.get_message(timeout=0) is not None:
                        pass
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()

    async def _apply(self, app_id: str, type_: str, decision: Decision, state: TypeState) -> None:
        app = await self._store.get_app(app_id)
        room = await self._host_room(app_id, type_, decision)
        capped = None if room.warning is None else room.quantity
        if room.warning is not None and capped != state.capacity_capped:
            self._services.logs.emit(app.name, APP, "autoscaler", room.warning)
        state.capacity_capped = capped
        if room.quantity == decision.previous:
            return
        if room.quantity != decision.quantity:
            decision = replace(decision, quantity=room.quantity)
        await self._dynos.scale(
            app, [ScaleChange(type_, "=", decision.quantity, None)], by_user=False
        )
        state.decisions.append((time.time(), decision))
        self._services.logs.emit(app.name, APP, "autoscaler", decision.line)

    async def _host_room(self, app_id: str, type_: str, decision: Decision) -> HostRoom:
        """``decision`` capped at the memory quotas this host holds (every app's dynos)."""
        committed, size_mb = 0, 0
        for app in await self._store.list_apps():
            for entry in await self._store.formation(app.id):
                committed += entry.quantity * entry.size.memory_mb
                if app.id == app_id and entry.type == type_:
                    size_mb = entry.size.memory_mb
        host_mb = psutil.virtual_memory().total // 2**20
        return host_room(decision, max(size_mb, 1), committed, host_mb)

    async def _quantity(self, app_id: str, type_: str) -> int | None:
        entries = [f for f in await self._store.formation(app_id) if f.type == type_]
        return entries[0].quantity if entries else None

    async def _redis_url(self, app_id: str) -> str | None:
        release = await self._store.call(Database.current_release, app_id)
        return None if release is None else release.config.get(REDIS_URL)


async def _depth(client: aioredis.Redis, waiting: list[str], running: list[str]) -> int:
    async with client.pipeline(transaction=False) as pipe:
        for key in waiting:
            pipe.llen(key)
        for key in running:
            pipe.zcard(key)
        counts = await pipe.execute()
    return sum(int(count) for count in counts)
