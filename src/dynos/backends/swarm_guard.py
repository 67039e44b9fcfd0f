"""The swarm backend's tenant isolation, its engine calls: each app's overlay network, and
the guard, a global service whose task on every node keeps the firewall rules of
``core/swarm_guard.py`` in place (blocking: the backend runs these in threads)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import docker
from docker import DockerClient
from docker.types import (
    ContainerSpec,
    Healthcheck,
    Mount,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
    UpdateConfig,
)

from dynos.backends import registry
from dynos.backends.swarm_engine import Nodes
from dynos.core.containers import LABEL
from dynos.core.swarm import TaskView, task_view
from dynos.core.swarm_guard import (
    HOST_ROOT,
    app_network,
    guard_health,
    guard_label,
    guard_script,
    guard_service_name,
    router_source,
)
from dynos.errors import NotSwarmManager, PlatformError

log = logging.getLogger("dynos")
GUARD_CAPABILITIES = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_CHROOT"]
SETTLE_TIMEOUT = 60.0  # seconds the first start waits for the guard on every ready node
GUARD_MEMORY = 64 * 1024 * 1024  # the guard's limits: 64 MiB, a tenth of a CPU
GUARD_NANO_CPUS = 100_000_000


def router_address(client: DockerClient) -> str:
    """The manager's address in the swarm: where the router's connections to the nodes
    come from. NotSwarmManager (one line at the server's start) when the engine names none."""
    swarm = client.info().get("Swarm") or {}
    try:
        return router_source(str(swarm.get("NodeAddr") or ""))
    except ValueError:
        raise NotSwarmManager(
            f"The swarm manager reports no usable address ({swarm.get('NodeAddr')!r}): make it "
            "a manager with docker swarm init --advertise-addr ADDRESS."
        ) from None


class SwarmGuard:
    """The guard's service (one per server, labelled with it) and the apps' networks."""

    def __init__(
        self,
        client: DockerClient,
        server: str,
        stack_image: str,
        registry: str,
        call: Callable[..., Awaitable[Any]],  # runs a blocking call in the backend's threads
    ) -> None:
        self._call = call
        self._lock = asyncio.Lock()
        self._covered: frozenset[str] | None = None  # the node addresses the guard knows
        self._service: str | None = None  # the guard service's id
        self._labelled: set[str] = set()  # nodes known to carry guard_label
        self._client = client
        self._api: Any = client.api
        self._server = server
        self._stack_image = stack_image
        self._registry = registry
        self._image: str | None = None  # the stack image, pushed: every node pulls it
        self._script: str | None = None  # the script the service runs now
        self.router = router_address(client)

    async def cover(self, nodes: Nodes) -> None:
        """The guard on every node, knowing every node's address (a node joined or changed
        its address: the guard's service is updated, its tasks replaced)."""
        addresses = frozenset(address for _, address, _ in nodes.values())
        async with self._lock:
            if addresses != self._covered:
                await self._call(self.ensure, sorted(addresses))
                self._covered = addresses
                await self._settle([node for node, (_, _, down) in nodes.items() if not down])

    async def _settle(self, node_ids: Sequence[str]) -> None:
        """Swarm leaves a task pending for good when no node met its constraint as it was
        made (a label added later does not place it; seen with 20.10): the dynos' services
        are made once the guard runs on the ready nodes and they carry its label. After
        SETTLE_TIMEOUT the nodes still without it take no dynos, and the server says so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT
        while True:
            found = await self._call(
                self._api.tasks, filters={"service": self._service, "desired-state": "running"}
            )
            await self._label_running([task_view(task) for task in found])
            missing = set(node_ids) - self._labelled
            if not missing:
                return
            if loop.time() > deadline:
                log.warning("swarm guard: not running on node(s) %s: no dynos there", missing)
                return
            await asyncio.sleep(0.5)

    async def observe(self, tasks: Mapping[str, Sequence[TaskView]], nodes: Nodes) -> None:
        """After each read of the cluster: the guard learns a node that joined, and a node
        its task runs on is labelled, so that dynos may be placed there."""
        with contextlib.suppress(docker.errors.DockerException, PlatformError):
            await self.cover(nodes)
            await self._label_running(tasks.get(self._service or "", []))

    async def _label_running(self, tasks: Sequence[TaskView]) -> None:
        for task in tasks:
            if task.running and task.node_id not in self._labelled:
                self._labelled.add(task.node_id)  # once: no second label while one runs
                try:
                    await self._call(self._label, task.node_id)
                except docker.errors.DockerException:
                    self._labelled.discard(task.node_id)
                    raise

    def _label(self, node_id: str) -> None:
        node = self._api.inspect_node(node_id)
        spec = dict(node["Spec"])
        labels = dict(spec.get("Labels") or {})
        if labels.get(guard_label(self._server)) != "on":
            spec["Labels"] = {**labels, guard_label(self._server): "on"}
            self._api.update_node(node_id, int(node["Version"]["Index"]), spec)
            log.info("swarm guard: node %s guarded, dynos may run there", node_id[:12])

    async def drop_networks(self, app_id: str | None, tries: int = 30) -> None:
        """An app's network (or all the server's) removed, once its tasks have left it."""
        for _ in range(tries):
            with contextlib.suppress(docker.errors.DockerException):
                if not await self._call(self.remove_networks, app_id):
                    return
            await asyncio.sleep(1)

    def ensure(self, nodes: Sequence[str]) -> None:
        """The guard runs on every node with the rules for ``nodes`` (their addresses):
        created, or updated when they changed."""
        script = guard_script(self._server, self.router, sorted(set(nodes)))
        if script == self._script:
            return
        if self._image is None:
            self._image = registry.push(self._client, self._registry, self._stack_image)
        name = guard_service_name(self._server)
        container = ContainerSpec(
            self._image,
            command=["sh", "-c", script],
            env=["GUARD_TASK={{.Task.ID}}"],
            user="0:0",
            labels={f"{LABEL}.server": self._server},
            mounts=[Mount(HOST_ROOT, "/", type="bind")],
            cap_drop=["ALL"],
            cap_add=GUARD_CAPABILITIES,
            stop_grace_period=10 * 10**9,
            healthcheck=Healthcheck(
                test=["CMD-SHELL", guard_health(self._server)],
                interval=10**9,
                timeout=5 * 10**9,
                retries=3,
            ),
        )
        template = TaskTemplate(
            container,
            resources=Resources(cpu_limit=GUARD_NANO_CPUS, mem_limit=GUARD_MEMORY),
            restart_policy=RestartPolicy(condition="any", delay=10**9),
            networks=["host"],  # the node's own network: its rules are the node's
        )
        body: dict[str, Any] = {
            "task_template": template,
            "name": name,
            "labels": {f"{LABEL}.server": self._server, f"{LABEL}.role": "guard"},
            "mode": ServiceMode("global"),
            # An update's new task loads its rules before the old one goes: never unguarded.
            "update_config": UpdateConfig(parallelism=0, order="start-first"),
        }
        found = self._api.services(filters={"name": name})
        current = next((s for s in found if s["Spec"]["Name"] == name), None)
        if current is None:
            self._service = str(self._api.create_service(**body)["ID"])
        else:
            version = int(current["Version"]["Index"])
            self._api.update_service(current["ID"], version, **body)
            self._service = str(current["ID"])
        self._script = script
        log.info("swarm guard: the router at %s only, on %d node(s)", self.router, len(nodes))

    @property
    def name(self) -> str:
        return guard_service_name(self._server)

    def remove(self) -> None:
        """The guard's tasks take their rules along (SIGTERM)."""
        name = guard_service_name(self._server)
        for service in self._api.services(filters={"name": name}):
            if service["Spec"]["Name"] == name:
                self._api.remove_service(service["ID"])
        self._script = None
        self._covered = None

    def network(self, app_id: str) -> str:
        """The app's overlay network, made when missing."""
        name = app_network(self._server, app_id)
        if not any(n["Name"] == name for n in self._api.networks(names=[name])):
            labels = {f"{LABEL}.server": self._server, f"{LABEL}.app-id": app_id}
            try:
                self._api.create_network(name, driver="overlay", labels=labels)
            except docker.errors.APIError as exc:
                if "already exists" not in str(exc):
                    raise
        return name

    def remove_networks(self, app_id: str | None = None) -> list[str]:
        """The server's app networks (or one app's), removed; those still in use (their
        tasks stopping) are returned, to try again."""
        labels = [f"{LABEL}.server={self._server}"]
        if app_id is not None:
            labels.append(f"{LABEL}.app-id={app_id}")
        left = []
        for network in self._api.networks(filters={"label": labels}):
            try:
                self._api.remove_network(network["Id"])
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                left.append(str(network["Name"]))
        return left
