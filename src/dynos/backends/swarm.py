"""The swarm backend: each process type of an app is a Swarm service; its tasks are the dynos.

Behind the same seam as the local and docker backends (base.py); the manager still decides per
dyno. A ``start`` of ``web.3`` makes the service of its type and release
(``core.swarm.service_spec``) cover slot 3, and the dyno is the running task of slot 3 made from
that spec (``core.swarm.Claims``). A new release is a new service beside the old one, whose
tasks serve until the manager has stopped its dynos. A ``stop`` lowers the replicas, or leaves
a slot that stays to its successor's start: a whole type's restart forces the service's update
(every task, start-first), one dyno's stops its task only (swarm_restart.py). A task that ends
unasked, or whose node is down, is the dyno's exit; its restart claims Swarm's new task.
Images: the manager's (images.py), pushed to the nodes' registry (registry.py). Ports: host
mode, the node picks. One-offs: containers on the manager (docker.py). Logs: ``docker service
logs``. Memory, CPU, R15: swarm_usage.py. Adoption: swarm_adoption.py. Isolation: per app
overlay networks, the guard on every node (swarm_guard.py). Add-ons: on the router's address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, cast

from docker import DockerClient

from dynos.backends import registry
from dynos.backends.base import DynoEvents, DynoSpec, DynoUsage
from dynos.backends.base import Placement as DynoPlacement
from dynos.backends.docker import ENGINE_ERRORS, DockerBackend
from dynos.backends.images import ReleaseImages
from dynos.backends.swarm_adoption import Adoption
from dynos.backends.swarm_engine import (
    Nodes,
    SwarmDyno,
    SwarmService,
    check_engines,
    dyno_service,
    follow_task_logs,
    probe,
    read_cluster,
    sync_service,
)
from dynos.backends.swarm_guard import SwarmGuard
from dynos.backends.swarm_jobs import NodeJobs
from dynos.backends.swarm_restart import SlotRestarts
from dynos.backends.swarm_usage import SwarmUsage
from dynos.core.containers import LABEL, server_id
from dynos.core.swarm import (
    SERVICE_PORT,
    Claims,
    TaskView,
    dyno_slot,
    exit_status,
    kept_instead,
    replicas_for,
    service_name,
)
from dynos.core.swarm_restart import (
    Mechanism,
    Replacement,
    force_after_restart,
    force_without_successor,
    mechanism,
    whole_type,
)
from dynos.core.swarm_usage import may_be_memory_kill
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
POLL_INTERVAL = 0.5  # seconds between reads of the tasks while dynos run
ONE_OFF_TYPES = ("run", "release")  # dynos run, release phases: containers, not services
SUCCESSOR_WAIT = 10.0  # seconds a stopped dyno's slot waits for its successor's start
STOP_GATHER = 0.2  # seconds a stop waits for the stops that come with it
STOP_MARGIN = 30.0  # seconds past the grace a stopped task has to be reported gone
NODE_DOWN = 137  # the exit status shown for a dyno whose node went down: killed with it


class SwarmBackend:
    def __init__(
        self,
        events: DynoEvents,
        client: DockerClient,
        *,
        stack_image: str,
        home: Path,
        registry_address: str,
        own_registry: registry.PlatformRegistry | None = None,
        boot_timeout: float = 60.0,
        stop_grace: float = 30.0,
        one_offs: DockerBackend,
        on_nodes: Callable[[list[str]], None] = lambda nodes: None,  # their addresses changed
    ) -> None:
        self._events = events
        self._client = client
        self._api: Any = cast(Any, client.api)  # the SDK's low-level calls are untyped
        self._boot_timeout = boot_timeout
        self._server = server_id(str(home))
        self._registry = registry_address
        self._own_registry = own_registry  # stopped with the backend
        self._stop_grace = stop_grace
        self.images = ReleaseImages(client, stack_image)
        self._one_offs = one_offs  # containers on the manager, on the server's own bridge
        self._services: dict[str, SwarmService] = {}
        self._dynos: dict[str, SwarmDyno] = {}
        self._claims = Claims()
        self._nodes: Nodes = {}
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._current: dict[str, str] = {}  # a type's name → its newest release's service
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="swarm")
        self._cli = shutil.which("docker") or "docker"
        self._guard = SwarmGuard(client, self._server, stack_image, registry_address, self._call)
        self._guard.on_nodes = on_nodes
        self._manager_node = str((client.info().get("Swarm") or {}).get("NodeID") or "")
        jobs = NodeJobs(self._api, self._server, self._guard.image, self._call)
        self._restarts = SlotRestarts(self._api, jobs, self._call)
        self._usage = SwarmUsage(
            self._api, self._cli, self._guard.name, jobs, self._manager_node, self._call
        )
        self._sync = partial(sync_service, call=self._call, api=self._api)
        self._adoption = Adoption(self._api, self._server, self._call)  # a dead server's

    @property
    def limits(self) -> str:
        version, nodes = self._client.version().get("Version", "?"), len(self._api.nodes())
        return f"Docker {version} swarm service limits (memory, CPUs, pids) over {nodes} nodes"

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    def allocate_port(self) -> int:
        return SERVICE_PORT  # each task binds it in its own network; the node picks the host's

    def address(self, key: str) -> str | None:
        dyno = self._dynos.get(key)
        return self._one_offs.address(key) if dyno is None else dyno.ip

    def placement(self, key: str) -> DynoPlacement:
        if (dyno := self._dynos.get(key)) is None:
            return self._one_offs.placement(key)
        return DynoPlacement(port=dyno.port, node=dyno.node)

    async def start(self, spec: DynoSpec) -> None:
        process_type, slot = dyno_slot(spec.name)
        if spec.terminal is not None or process_type in ONE_OFF_TYPES:
            await self._one_offs.start(spec)
            return
        try:
            local = await self._call(self.images.ensure, spec.app_id, spec.app_name, spec.cwd)
            image = await self._call(registry.push, self._client, self._registry, local)
        except ENGINE_ERRORS as exc:
            raise PlatformError(f"Could not make the image of {spec.name}: {exc}") from None
        try:
            if not self._nodes:
                self._nodes = (await self._call(read_cluster, self._api, []))[1]
            await self._guard.cover(self._nodes)
            network = await self._call(self._guard.network, spec.app_id)
        except ENGINE_ERRORS as exc:
            raise PlatformError(f"Could not isolate {spec.name} on the swarm: {exc}") from None
        grace, router = self._stop_grace, self._guard.router  # router: where its add-ons are
        wanted = dyno_service(self._server, spec, process_type, image, grace, network, router)
        name, base = wanted.name, service_name(self._server, spec.app_name, process_type)
        previous, self._current[base] = self._current.get(base), name
        old = self._services.get(previous or "")
        if old is not None and previous != name and not old.slots:
            self._spawn(self._remove(old))  # a release before whose dynos are all stopped
        self._adoption.adopt(wanted, self._services)
        service = self._services.setdefault(name, SwarmService(name, wanted))
        service.base = base
        deadline = asyncio.get_running_loop().time() + self._boot_timeout
        if slot in service.replaced:  # the successor of a dyno stopped in this slot: a restart
            replaced = service.replaced.pop(slot)
            down = [node for node, (_, _, off) in self._nodes.items() if off]
            condition = service.wanted.restart_condition
            how = mechanism(replaced, self._manager_node, down, condition)
            if how == "force" or replaced.task is None:
                service.force += 1  # every task replaced, each new one started first
            else:  # only its task, stopped first (with the grace) and replaced in its slot
                deadline += replaced.grace
                self._spawn(self._restart(service, replaced.task, how, replaced.grace))
        service.wanted = service.spec(wanted)
        service.slots[slot] = spec.key
        self._dynos[spec.key] = SwarmDyno(spec, name, slot, wanted.template, deadline)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            await self._sync(service)
        except ENGINE_ERRORS as exc:
            self._dynos.pop(spec.key, None)
            service.slots.pop(slot, None)
            raise PlatformError(f"Swarm refused the service of {spec.name}: {exc}") from None

    async def _poll(self) -> None:
        """Read the services' tasks and the nodes while dynos run: claim, place, end."""
        while self._dynos:
            names = [s.name for s in self._services.values() if s.id is not None]
            try:
                tasks, nodes = await self._call(read_cluster, self._api, [*names, self._guard.name])
            except ENGINE_ERRORS as exc:
                log.warning("swarm: could not read the tasks: %s", exc)
                await asyncio.sleep(POLL_INTERVAL * 4)
                continue
            self._nodes = nodes = await check_engines(nodes)  # a killed engine: down now
            self._usage.follow()
            self._spawn(self._guard.observe(tasks, nodes))  # a node joined, or is guarded
            for dyno in list(self._dynos.values()):
                service = self._services.get(dyno.service)  # None: removed meanwhile
                views = tasks.get(service.id or "", []) if service else []
                self._observe(dyno, views, list(service.slots) if service else [])
            await asyncio.sleep(POLL_INTERVAL)

    def _observe(self, dyno: SwarmDyno, views: list[TaskView], staying: list[int]) -> None:
        if dyno.task is None:
            if dyno.stopping:
                return
            replicas = replicas_for(staying)
            task = self._claims.claim(dyno.spec.key, dyno.slot, dyno.template, views, replicas)
            if task is not None:
                self._place(dyno, task)
            elif asyncio.get_running_loop().time() > dyno.deadline and not dyno.timed_out:
                dyno.timed_out = True
                self._events.dyno_boot_timeout(dyno.spec.key)
            return
        if dyno.ending:  # killed: its exit is told once its engine said whether it was R15
            return
        current = next((t for t in views if t.id == dyno.task.id), None)
        if current is None or current.ended:
            if current is not None and may_be_memory_kill(exit_status(current), dyno.stopping):
                dyno.ending = True
                self._spawn(self._end_killed(dyno, current))
            else:
                self._finish(dyno, exit_status(current) if current else 0)
        elif self._nodes.get(current.node_id, ("", "", False))[2]:
            # Its node is down (its engine refuses its port, or its heartbeats stopped): out
            # of the router now; the restart takes Swarm's new task of the slot, not this one.
            self._events.dyno_output(dyno.spec.key, f"(dynos) node {dyno.node} is down")
            self._finish(dyno, NODE_DOWN, retire=True)
        elif dyno.stopping and kept_instead(dyno.slot, staying, current, views):
            said = "(dynos) Swarm ended another dyno's task instead: this one goes on as that dyno"
            self._events.dyno_output(dyno.spec.key, said)
            self._finish(dyno, 143)  # its task free for that dyno's restart (Claims.claim)

    async def _end_killed(self, dyno: SwarmDyno, task: TaskView) -> None:
        try:  # its exit told whatever the check does: else it would stay up, its slot held
            if await self._usage.oom_killed(task) and self._dynos.get(dyno.spec.key) is dyno:
                self._events.dyno_oom_killed(dyno.spec.key)
        finally:
            self._finish(dyno, exit_status(task))

    def _place(self, dyno: SwarmDyno, task: TaskView) -> None:
        dyno.task = task
        hostname, address, _down = self._nodes.get(task.node_id, ("?", "", False))
        dyno.node, dyno.ip, dyno.port = hostname, address or None, task.published_port
        emit = partial(self._events.dyno_output, dyno.spec.key)
        dyno.tasks.append(asyncio.create_task(follow_task_logs(self._cli, task.id, emit)))
        dyno.tasks.append(asyncio.create_task(probe(dyno, self._events)))

    def _finish(self, dyno: SwarmDyno, status: int, retire: bool = False) -> None:
        key = dyno.spec.key
        if self._dynos.pop(key, None) is None:
            return
        self._claims.release(key, retire)
        service = self._services.get(dyno.service)
        if service is not None and service.slots.get(dyno.slot) == key:
            del service.slots[dyno.slot]  # the next start or stop sends the replicas
        for task in dyno.tasks:
            task.cancel()
        dyno.exited.set()
        self._events.dyno_exited(key, status)

    async def stop(self, key: str, grace: float, *, replaced: bool = False) -> bool:
        dyno = self._dynos.get(key)
        if dyno is None:
            return await self._one_offs.stop(key, grace)
        if dyno.ending:  # killed unasked: done once its engine said whether it was R15
            await dyno.exited.wait()
            return False
        dyno.stopping = True
        service = self._services.get(dyno.service)
        if service is None:  # removed meanwhile (apps:destroy): its tasks are gone
            self._finish(dyno, 0)
            return False
        if service.slots.get(dyno.slot) == key:
            del service.slots[dyno.slot]
        # Stops that come together (scale down, ps:stop of a type, shutdown) are one change.
        await asyncio.sleep(STOP_GATHER)
        if dyno.exited.is_set():
            return False
        if dyno.task is None:
            self._finish(dyno, 0)
            return False
        if self._current.get(service.base) != service.name:
            # A release before the type's newest: out of the router already, its dyno is
            # done; its service (and its tasks) goes with the last of them.
            self._finish(dyno, 143, retire=True)
            if not service.slots:
                await self._remove(service)
            return False
        if replaced or dyno.slot <= replicas_for(list(service.slots)):
            # A slot that stays (a restart, or a deploy's dyno): done now, its task left to
            # its successor's start (a new release's service, or this one's task replaced:
            # swarm_restart.py); none within SUCCESSOR_WAIT: forced then. Its replicas stay.
            whole = whole_type(list(service.slots))  # no other dyno of the type stays
            entry = service.replaced[dyno.slot] = Replacement(dyno.task, whole, grace)
            self._finish(dyno, 143, retire=True)
            self._spawn(self._replace_later(service, dyno.slot, entry))
            return False
        # Fewer replicas end the top slot's task: wait for it, as for a process.
        await self._force(service, False)
        try:
            await asyncio.wait_for(dyno.exited.wait(), grace + STOP_MARGIN)
        except TimeoutError:
            self._finish(dyno, 137)
        return False

    async def _replace_later(self, service: SwarmService, slot: int, entry: Replacement) -> None:
        await asyncio.sleep(SUCCESSOR_WAIT)
        if service.replaced.get(slot) is entry:  # else its successor started (or a newer stop)
            del service.replaced[slot]  # above the replicas now (scaled down): not forced
            await self._force(service, force_without_successor(slot, list(service.slots)))

    async def _restart(
        self, service: SwarmService, task: TaskView, how: Mechanism, grace: float
    ) -> None:
        done = await self._restarts.replace(service.id or "", service.wanted, task, how, grace)
        dyno = self._dynos.get(service.slots.get(task.slot, ""))  # its successor
        # Done, not wanted any more (scaled down, stopped), or its dyno runs: the replicas only.
        force = not done and force_after_restart(task.slot, service.slots, bool(dyno and dyno.task))
        await self._force(service, force)

    async def _force(self, service: SwarmService, force: bool = True) -> None:
        """Every task replaced (start-first; else only the replicas the dynos need sent),
        unless a newer release's service took over."""
        if self._current.get(service.base) == service.name:
            service.force += int(force)
            with contextlib.suppress(*ENGINE_ERRORS):
                await self._sync(service)

    async def _remove(self, service: SwarmService) -> None:
        self._services.pop(service.name, None)
        if service.id is not None:
            with contextlib.suppress(*ENGINE_ERRORS):
                await self._call(self._api.remove_service, service.id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._background.add(task := asyncio.create_task(coroutine))
        task.add_done_callback(self._background.discard)

    def kill(self, key: str) -> None:
        if key in self._dynos:
            self._dynos[key].tasks.append(asyncio.create_task(self.stop(key, 0)))
        else:
            self._one_offs.kill(key)

    def memory_used(self, key: str) -> int | None:
        return None if (found := self.usage(key)) is None else found.rss

    def usage(self, key: str) -> DynoUsage | None:
        dyno = self._dynos.get(key)
        return self._one_offs.usage(key) if dyno is None else self._usage.of(dyno.task)

    def scratch_usage(self, key: str) -> tuple[int, int] | None:
        return None

    async def release_app(self, app_id: str) -> None:
        for service in list(self._services.values()):
            if service.wanted.labels.get(f"{LABEL}.app-id") == app_id:
                await self._remove(service)
        self._spawn(self._guard.drop_networks(app_id))
        await self._one_offs.release_app(app_id)

    async def close(self, grace: float) -> None:
        """The services go (Swarm stops what tasks are left with the grace), the registry too."""
        # Nothing of ours may call the engine after this: the poll, the adoption and the
        # delayed replacements end first (their calls would meet a shut executor).
        pending = [t for t in (self._poller, *self._background) if t is not None]
        for task in pending:
            task.cancel()
        closing = (self._adoption.cancel(), self._usage.close())
        await asyncio.gather(*pending, *closing, return_exceptions=True)
        ids = [s.id for s in self._services.values()] + self._adoption.left_ids()
        for service_id in ids:
            if service_id is not None:
                with contextlib.suppress(*ENGINE_ERRORS):
                    await self._call(self._api.remove_service, service_id)
        for dyno in list(self._dynos.values()):
            self._finish(dyno, 0)
        # The guard last: its rules stay while the tasks it guards stop.
        await self._guard.drop_networks(None, tries=int(self._stop_grace) + 10)
        with contextlib.suppress(*ENGINE_ERRORS):
            await self._guard.teardown()
        await self._one_offs.close(grace)
        self._pool.shutdown(wait=False)
        if self._own_registry is not None:
            self._own_registry.stop()
