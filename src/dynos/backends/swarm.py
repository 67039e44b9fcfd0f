"""The swarm backend: each process type of an app is a Swarm service; its tasks are the dynos.

Behind the same seam as the local and docker backends (base.py). The manager still decides
per dyno; this backend maps its calls onto one service per app and type
(``core.swarm.service_spec``): a ``start`` of ``web.3`` makes the ``web`` service's replicas
cover slot 3 (and updates the service when the release, config or size changed: a rolling
update that starts new tasks first), and the dyno is the running task of slot 3 made from
that spec (``core.swarm.Claims``). A ``stop`` lowers the replicas, or, when the slot stays
(a restart), forces the service to replace its tasks. A task that ends unasked is reported
as the dyno's exit, and the manager's restart claims the task Swarm started in its place.

Images: the release image is made on the manager's engine (images.py) and pushed to the
registry every node pulls from (registry.py). Ports: published in host mode at a port the
node picks; ``address`` is the task's node address and ``placement`` its port and node,
read from Swarm. One-off dynos (``run.N``, ``release.N``) run as containers on the manager's
engine (docker.py): they need a terminal or the release's exit status, which a service has
not. Logs: ``docker service logs --follow --raw`` of each task, through the manager.
Memory: a task on another node has no cgroup here: no R14 on the swarm backend yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

from docker import DockerClient

from dynos.backends import registry
from dynos.backends.base import DynoEvents, DynoSpec, DynoUsage
from dynos.backends.base import Placement as DynoPlacement
from dynos.backends.docker import ENGINE_ERRORS, DockerBackend
from dynos.backends.images import ReleaseImages
from dynos.backends.local import PROBE_INTERVAL, answers, start_command
from dynos.backends.swarm_engine import Nodes, follow_task_logs, read_cluster, service_body
from dynos.core.containers import APP_DIR, DYNO_UID, LABEL, container_environment, server_id
from dynos.core.swarm import (
    SERVICE_PORT,
    Claims,
    ServiceSpec,
    TaskView,
    dyno_slot,
    exit_status,
    replicas_for,
    service_name,
    service_spec,
)
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
POLL_INTERVAL = 0.5  # seconds between reads of the tasks while dynos run
ONE_OFF_TYPES = ("run", "release")  # dynos run, release phases: containers, not services
ADOPT_WINDOW = 120.0  # seconds a restarted server's starts have to adopt the services left
STOP_GATHER = 0.2  # seconds a stop waits for the stops that come with it
STOP_MARGIN = 30.0  # seconds past the grace a stopped task has to be reported gone
NODE_DOWN = 137  # the exit status shown for a dyno whose node went down: killed with it


@dataclass
class _Service:
    name: str
    wanted: ServiceSpec  # the newest spec a start asked for (replicas filled in at sync)
    slots: dict[int, str] = field(default_factory=dict)  # slot → the key that runs there
    id: str | None = None
    force: int = 0  # bumped to make Swarm replace every task (a dyno's restart)
    applied: tuple[str, int, int] | None = None  # (template, replicas, force) last sent
    floor: int = 0  # an adopted service's replicas, kept until the adoption window ends
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Dyno:
    spec: DynoSpec
    service: str
    slot: int
    template: str
    deadline: float
    task: TaskView | None = None
    ip: str | None = None
    port: int | None = None
    node: str | None = None
    stopping: bool = False
    timed_out: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    exited: asyncio.Event = field(default_factory=asyncio.Event)


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
        self._one_offs = DockerBackend(
            events, client, stack_image=stack_image, home=home, boot_timeout=boot_timeout
        )
        self._services: dict[str, _Service] = {}
        self._dynos: dict[str, _Dyno] = {}
        self._claims = Claims()
        self._nodes: Nodes = {}
        self._poller: asyncio.Task[None] | None = None
        self._adoption: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="swarm")
        self._cli = shutil.which("docker") or "docker"
        # A server before this one on the same home died and left its services running: the
        # manager's starts adopt their tasks (same slot and spec: no dyno restarts); what no
        # start adopts within ADOPT_WINDOW is removed.
        left: list[dict[str, Any]] = self._api.services(
            filters={"label": f"{LABEL}.server={self._server}"}
        )
        self._leftovers = {service["Spec"]["Name"]: service for service in left}
        if self._leftovers:
            log.info("adopting %d dyno services a server before left", len(self._leftovers))

    @property
    def limits(self) -> str:
        version = self._client.version().get("Version", "?")
        nodes = len(self._api.nodes())
        return f"Docker {version} swarm service limits (memory, CPUs, pids) over {nodes} nodes"

    async def _remove_unadopted(self) -> None:
        await asyncio.sleep(ADOPT_WINDOW)
        leftovers, self._leftovers = self._leftovers, {}
        for name, left in leftovers.items():
            adopted = self._services.get(name)
            with contextlib.suppress(*ENGINE_ERRORS):
                if adopted is None:
                    await self._call(self._api.remove_service, left["ID"])
                elif adopted.floor:
                    adopted.floor = 0  # the replicas the manager's dynos need, from now
                    await self._sync(adopted)

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    def allocate_port(self) -> int:
        return SERVICE_PORT  # each task binds it in its own network; the node picks the host's

    def address(self, key: str) -> str | None:
        dyno = self._dynos.get(key)
        return self._one_offs.address(key) if dyno is None else dyno.ip

    def placement(self, key: str) -> DynoPlacement:
        dyno = self._dynos.get(key)
        if dyno is None:
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
        name = service_name(self._server, spec.app_name, process_type)
        wanted = service_spec(
            name=name,
            image=image,
            command=start_command(spec.command, spec.cwd),
            env=container_environment(spec.env, str(spec.cwd)),
            process_type=process_type,
            size=spec.size,
            replicas=0,
            web=spec.port is not None,
            labels={
                f"{LABEL}.server": self._server,
                f"{LABEL}.app-id": spec.app_id,
                f"{LABEL}.app": spec.app_name,
                f"{LABEL}.type": process_type,
            },
            stop_grace=self._stop_grace,
            user=f"{DYNO_UID}:{DYNO_UID}",
            workdir=APP_DIR,
        )
        if name not in self._services and name in self._leftovers:
            left = self._leftovers[name]
            force = int(left["Spec"]["TaskTemplate"].get("ForceUpdate", 0))
            floor = int(left["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0))
            adopted = _Service(name, wanted, id=str(left["ID"]), force=force, floor=floor)
            self._services[name] = adopted
        service = self._services.setdefault(name, _Service(name, wanted))
        service.wanted = wanted
        service.slots[slot] = spec.key
        deadline = asyncio.get_running_loop().time() + self._boot_timeout
        self._dynos[spec.key] = _Dyno(spec, name, slot, wanted.template, deadline)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        if self._leftovers and self._adoption is None:
            self._adoption = asyncio.create_task(self._remove_unadopted())
        try:
            await self._sync(service)
        except ENGINE_ERRORS as exc:
            self._dynos.pop(spec.key, None)
            service.slots.pop(slot, None)
            raise PlatformError(f"Swarm refused the service of {spec.name}: {exc}") from None

    async def _sync(self, service: _Service) -> None:
        """Send the service's spec when it changed: its template, replicas or forced
        replacement. Serialized per service; a call that waited sends the newest state."""
        async with service.lock:
            replicas = max(replicas_for(list(service.slots)), service.floor)
            state = (service.wanted.template, replicas, service.force)
            if service.applied == state:
                return
            body = service_body(service.wanted, replicas, service.force)
            if service.id is None:
                created = await self._call(self._api.create_service, **body)
                service.id = str(created["ID"])
            else:
                current = await self._call(self._api.inspect_service, service.id)
                version = int(current["Version"]["Index"])
                await self._call(self._api.update_service, service.id, version, **body)
            service.applied = state

    async def _poll(self) -> None:
        """Read the services' tasks and the nodes while dynos run: claim, place, end."""
        while self._dynos:
            try:
                tasks, nodes = await self._call(read_cluster, self._api, self._names())
            except ENGINE_ERRORS as exc:
                log.warning("swarm: could not read the tasks: %s", exc)
                await asyncio.sleep(POLL_INTERVAL * 4)
                continue
            self._nodes = nodes
            now = asyncio.get_running_loop().time()
            for dyno in list(self._dynos.values()):
                views = tasks.get(self._services[dyno.service].id or "", [])
                self._observe(dyno, views, now)
            await asyncio.sleep(POLL_INTERVAL)

    def _names(self) -> list[str]:
        return [s.name for s in self._services.values() if s.id is not None]

    def _observe(self, dyno: _Dyno, views: list[TaskView], now: float) -> None:
        if dyno.task is None:
            if dyno.stopping:
                return
            task = self._claims.claim(dyno.spec.key, dyno.slot, dyno.template, views)
            if task is not None:
                self._place(dyno, task)
            elif now > dyno.deadline and not dyno.timed_out:
                dyno.timed_out = True
                self._events.dyno_boot_timeout(dyno.spec.key)
            return
        current = next((t for t in views if t.id == dyno.task.id), None)
        if current is None or current.ended:
            self._finish(dyno, exit_status(current) if current else 0)
        elif self._nodes.get(current.node_id, ("", "", False))[2]:
            # Its node is down (Swarm said so after its heartbeats stopped): out of the
            # router now; Swarm starts its slot elsewhere, and the manager's restart takes it.
            self._events.dyno_output(dyno.spec.key, f"(dynos) node {dyno.node} is down")
            self._finish(dyno, NODE_DOWN)

    def _place(self, dyno: _Dyno, task: TaskView) -> None:
        dyno.task = task
        hostname, address, _down = self._nodes.get(task.node_id, ("?", "", False))
        dyno.node, dyno.ip, dyno.port = hostname, address or None, task.published_port
        emit = partial(self._events.dyno_output, dyno.spec.key)
        dyno.tasks.append(asyncio.create_task(follow_task_logs(self._cli, task.id, emit)))
        dyno.tasks.append(asyncio.create_task(self._probe(dyno)))

    async def _probe(self, dyno: _Dyno) -> None:
        """Up once the task runs and, for a web dyno, answers at its node's port."""
        loop = asyncio.get_running_loop()
        if dyno.spec.port is None:
            self._events.dyno_up(dyno.spec.key)
            return
        while not dyno.exited.is_set():
            if dyno.ip and dyno.port and await answers(dyno.ip, dyno.port, dyno.spec.health_path):
                if not dyno.exited.is_set():
                    self._events.dyno_up(dyno.spec.key)
                return
            if loop.time() > dyno.deadline and not dyno.timed_out:
                dyno.timed_out = True
                self._events.dyno_boot_timeout(dyno.spec.key)
                return
            await asyncio.sleep(PROBE_INTERVAL)

    def _finish(self, dyno: _Dyno, status: int) -> None:
        key = dyno.spec.key
        if self._dynos.pop(key, None) is None:
            return
        self._claims.release(key)
        service = self._services.get(dyno.service)
        if service is not None and service.slots.get(dyno.slot) == key:
            del service.slots[dyno.slot]  # the next start or stop sends the replicas
        for task in dyno.tasks:
            task.cancel()
        dyno.exited.set()
        self._events.dyno_exited(key, status)

    async def stop(self, key: str, grace: float) -> bool:
        dyno = self._dynos.get(key)
        if dyno is None:
            return await self._one_offs.stop(key, grace)
        dyno.stopping = True
        service = self._services[dyno.service]
        if service.slots.get(dyno.slot) == key:
            del service.slots[dyno.slot]
        # Stops that come together (a scale down, ps:stop of a type, the server's shutdown)
        # are one change of the service: each waits for the others to take their slots out.
        await asyncio.sleep(STOP_GATHER)
        if dyno.exited.is_set():
            return False
        if dyno.task is None:
            self._finish(dyno, 0)
            return False
        # Its task must end. Fewer replicas end the top slot's; a slot that stays (a
        # restart) needs Swarm to replace the tasks, one at a time, new ones first. A
        # service whose spec changed (a new release) replaces them anyway.
        stays = dyno.slot in service.slots or dyno.slot <= replicas_for(list(service.slots))
        if stays and dyno.template == service.wanted.template:
            service.force += 1
        with contextlib.suppress(*ENGINE_ERRORS):
            await self._sync(service)
        try:
            await asyncio.wait_for(dyno.exited.wait(), grace + STOP_MARGIN)
        except TimeoutError:
            self._finish(dyno, 137)
        return False

    def kill(self, key: str) -> None:
        if key in self._dynos:
            self._dynos[key].tasks.append(asyncio.create_task(self._kill(key)))
        else:
            self._one_offs.kill(key)

    async def _kill(self, key: str) -> None:
        await self.stop(key, 0)

    def memory_used(self, key: str) -> int | None:
        return None if key in self._dynos else self._one_offs.memory_used(key)

    def usage(self, key: str) -> DynoUsage | None:
        return None if key in self._dynos else self._one_offs.usage(key)

    def scratch_usage(self, key: str) -> tuple[int, int] | None:
        return None

    async def release_app(self, app_id: str) -> None:
        for name, service in list(self._services.items()):
            if service.wanted.labels.get(f"{LABEL}.app-id") == app_id:
                del self._services[name]
                if service.id is not None:
                    with contextlib.suppress(*ENGINE_ERRORS):
                        await self._call(self._api.remove_service, service.id)
        await self._one_offs.release_app(app_id)

    async def close(self, grace: float) -> None:
        """The services go (Swarm stops what tasks are left with the grace), and the
        server's own registry."""
        if self._adoption is not None:
            self._adoption.cancel()
        ids = [s.id for s in self._services.values()] + [s["ID"] for s in self._leftovers.values()]
        for service_id in ids:
            if service_id is not None:
                with contextlib.suppress(*ENGINE_ERRORS):
                    await self._call(self._api.remove_service, service_id)
        for dyno in list(self._dynos.values()):
            self._finish(dyno, 0)
        await self._one_offs.close(grace)
        self._pool.shutdown(wait=False)
        if self._own_registry is not None:
            self._own_registry.stop()
