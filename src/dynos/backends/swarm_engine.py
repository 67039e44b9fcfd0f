"""The swarm backend's records of its services and dynos, and its engine calls: a service
spec (a process type's, the guard's) as the API's arguments, the tasks and nodes read back
(blocking: the backend runs them in threads), a task's output followed, the manager's
address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from docker import DockerClient
from docker.types import (
    ContainerSpec,
    DriverConfig,
    Healthcheck,
    Mount,
    Placement,
    PlacementPreference,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
    UpdateConfig,
)

from dynos.backends.base import DynoEvents, DynoSpec
from dynos.backends.local import LINE_LIMIT, PROBE_INTERVAL, answers, pump_lines, start_command
from dynos.core.containers import APP_DIR, DYNO_UID, LABEL, container_environment
from dynos.core.guard_labels import LAYOUT_LABEL
from dynos.core.swarm import (
    TEMPLATE_LABEL,
    ServiceSpec,
    TaskView,
    kept_on_adoption,
    replicas_for,
    service_name,
    service_spec,
    task_view,
)
from dynos.core.swarm_guard import (
    HOST_ROOT,
    guard_constraint,
    guard_service_name,
    router_source,
)
from dynos.core.swarm_restart import Replacement
from dynos.errors import NotSwarmManager

log = logging.getLogger("dynos")

Nodes = dict[str, tuple[str, str, bool]]  # node id → (hostname, address, down)
# Every swarm node's engine listens at its address on this port (its network gossip; Docker's
# docs ask for it open between the nodes).
GOSSIP_PORT = 7946
ENGINE_PROBE_TIMEOUT = 0.3  # seconds: a node that does not answer within is left to Swarm


@dataclass
class SwarmService:
    name: str
    wanted: ServiceSpec  # the newest spec a start asked for (replicas filled in at sync)
    slots: dict[int, str] = field(default_factory=dict)  # slot → the key that runs there
    id: str | None = None
    force: int = 0  # bumped to make Swarm replace every task (a dyno's restart)
    applied: tuple[str, int, int] | None = None  # (template, replicas, force) last sent
    floor: int = 0  # an adopted service's replicas, kept until the adoption window ends
    # Slots whose dyno stopped, to restart: their successor's start replaces the task.
    replaced: dict[int, Replacement] = field(default_factory=dict)
    base: str = ""  # the type's name: the services of its releases share it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    left: Mapping[str, Any] | None = None  # an adopted service's TaskTemplate, as it was

    def spec(self, wanted: ServiceSpec) -> ServiceSpec:
        """``wanted`` as this service is sent: an adopted one keeps its restart policy and
        grace (``kept_on_adoption``), so that no sync replaces its tasks."""
        return wanted if self.left is None else kept_on_adoption(wanted, self.left)


@dataclass
class SwarmDyno:
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
    ending: bool = False  # its task was killed: whether at its memory limit is being asked
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    exited: asyncio.Event = field(default_factory=asyncio.Event)


def read_cluster(api: Any, names: list[str]) -> tuple[dict[str, list[TaskView]], Nodes]:
    """The tasks of the services ``names``, by service id, and every node's hostname,
    address (where the router reaches the ports its tasks publish) and whether Swarm found
    it down."""
    by_service: dict[str, list[TaskView]] = {}
    if names:
        for task in api.tasks(filters={"service": names}):
            by_service.setdefault(str(task.get("ServiceID")), []).append(task_view(task))
    nodes: Nodes = {}
    for node in api.nodes():
        description, status = node.get("Description") or {}, node.get("Status") or {}
        address = str(status.get("Addr") or "")
        if address in ("", "0.0.0.0"):  # a manager can report this: its swarm address then
            manager = str((node.get("ManagerStatus") or {}).get("Addr") or "")
            address = manager.rpartition(":")[0] or "127.0.0.1"
        down = status.get("State") == "down"
        nodes[str(node["ID"])] = (str(description.get("Hostname", "?")), address, down)
    return by_service, nodes


async def check_engines(nodes: Nodes, port: int = GOSSIP_PORT) -> Nodes:
    """``nodes``, with those whose engine is gone marked down: a node whose address refuses a
    connection at its gossip port has no engine any more (killed, crashed), though Swarm has
    it up until its heartbeats run out (3 heartbeat periods: 15 s by default). A node that
    does not answer at all (a machine that vanished, a slow network) is left to Swarm."""
    live = [node for node, (_, address, down) in nodes.items() if address and not down]
    gone = await asyncio.gather(*(_refuses(nodes[node][1], port) for node in live))
    out = dict(nodes)
    for node, refused in zip(live, gone, strict=True):
        if refused:
            hostname, address, _ = nodes[node]
            out[node] = (hostname, address, True)
    return out


async def _refuses(address: str, port: int) -> bool:
    try:
        connecting = asyncio.open_connection(address, port)
        _, writer = await asyncio.wait_for(connecting, ENGINE_PROBE_TIMEOUT)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


def service_body(spec: ServiceSpec, replicas: int, force: int) -> dict[str, Any]:
    """The engine API's arguments (create_service, update_service) for ``spec``."""
    container = ContainerSpec(
        spec.image,
        command=list(spec.command),
        env=list(spec.env),
        labels=dict(spec.container_labels),
        user=spec.user,
        workdir=spec.workdir,
        stop_grace_period=spec.stop_grace_ns,
        init=True,
        cap_drop=["ALL"],
    )
    limits = {"NanoCPUs": spec.nano_cpus, "MemoryBytes": spec.mem_limit, "Pids": spec.pids_limit}
    template = TaskTemplate(
        container,
        resources={"Limits": limits},  # type: ignore[arg-type]  # the SDK's has no Pids
        restart_policy=RestartPolicy(
            condition=spec.restart_condition,
            delay=spec.restart_delay_ns,
            max_attempts=spec.restart_attempts,
            window=spec.restart_window_ns,
        ),
        placement=Placement(
            constraints=list(spec.constraints) or None,
            preferences=[PlacementPreference("spread", spec.placement_spread)],
        ),
        force_update=force,
        networks=[spec.network] if spec.network else None,
    )
    ports = []
    if spec.target_port is not None:
        # Host mode: no routing mesh (it needs IPVS); the node picks each task's host port.
        ports = [{"Protocol": "tcp", "TargetPort": spec.target_port, "PublishMode": "host"}]
    return {
        "task_template": template,
        "name": spec.name,
        "labels": dict(spec.labels),
        "mode": ServiceMode("replicated", replicas=replicas),
        "update_config": UpdateConfig(parallelism=spec.update_parallelism, order=spec.update_order),
        "endpoint_spec": {"Mode": spec.endpoint_mode, "Ports": ports},
    }


async def sync_service(
    service: SwarmService, call: Callable[..., Awaitable[Any]], api: Any
) -> None:
    """Send the service's spec when it changed: its template, replicas or forced
    replacement. Serialized per service; a call that waited sends the newest state."""
    async with service.lock:
        # The slots whose dyno's successor is awaited are kept: fewer replicas would have
        # Swarm pick a task to end, not necessarily theirs.
        replicas = max(replicas_for([*service.slots, *service.replaced]), service.floor)
        state = (service.wanted.template, replicas, service.force)
        if service.applied == state:
            return
        body = service_body(service.wanted, replicas, service.force)
        if service.id is None:
            created = await call(api.create_service, **body)
            service.id = str(created["ID"])
        else:
            current = await call(api.inspect_service, service.id)
            version = int(current["Version"]["Index"])
            await call(api.update_service, service.id, version, **body)
        service.applied = state


async def follow_task_logs(cli: str, task_id: str, emit: Callable[[str], None]) -> None:
    """A task's output, wherever it runs, through the manager's ``docker service logs``."""
    process = await asyncio.create_subprocess_exec(
        *(cli, "service", "logs", "--follow", "--raw", task_id),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        await asyncio.gather(pump_lines(process.stdout, emit), pump_lines(process.stderr, emit))
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def probe(dyno: SwarmDyno, events: DynoEvents) -> None:
    """Up once the task runs and, for a web dyno, answers at its node's port."""
    loop = asyncio.get_running_loop()
    if dyno.spec.port is None:
        events.dyno_up(dyno.spec.key)
        return
    while not dyno.exited.is_set():
        if dyno.ip and dyno.port and await answers(dyno.ip, dyno.port, dyno.spec.health_path):
            if not dyno.exited.is_set():
                events.dyno_up(dyno.spec.key)
            return
        if loop.time() > dyno.deadline and not dyno.timed_out:
            dyno.timed_out = True
            events.dyno_boot_timeout(dyno.spec.key)
            return
        await asyncio.sleep(PROBE_INTERVAL)


def dyno_service(
    server: str,
    spec: DynoSpec,
    process_type: str,
    image: str,
    stop_grace: float,
    network: str = "",
    addon_host: str | None = None,
) -> ServiceSpec:
    """The service of ``spec``'s release and type, as a start of one of its dynos asks for
    it (its replicas are filled in when it is sent). ``addon_host``: where its tasks reach
    the add-on servers (the router's address), in its add-ons' URLs."""
    return service_spec(
        name=service_name(server, spec.app_name, process_type),
        image=image,
        command=start_command(spec.command, spec.cwd),
        env=container_environment(spec.env, str(spec.cwd), addon_host),
        process_type=process_type,
        size=spec.size,
        replicas=0,
        web=spec.port is not None,
        labels={
            f"{LABEL}.server": server,
            f"{LABEL}.app-id": spec.app_id,
            f"{LABEL}.app": spec.app_name,
            f"{LABEL}.type": process_type,
        },
        stop_grace=stop_grace,
        user=f"{DYNO_UID}:{DYNO_UID}",
        workdir=APP_DIR,
        network=network,
        constraints=[guard_constraint(server)],
    )


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


GUARD_CAPABILITIES = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_CHROOT"]
GUARD_MEMORY = 64 * 1024 * 1024  # the guard's limits: 64 MiB, a tenth of a CPU
GUARD_NANO_CPUS = 100_000_000


def guard_service_body(
    image: str,
    server: str,
    script: str,
    health: str,
    template: str,
    order: Literal["start-first", "stop-first"],
    layout: str = "",
) -> dict[str, Any]:
    """The guard's global service (``backends/swarm_guard.py``) as the API's arguments: its
    task runs ``script`` as root on the node's own network, with the node's root filesystem
    at HOST_ROOT, healthy while ``health`` succeeds; ``template`` its tasks' template label
    (a generation, or the teardown's); ``layout`` its rules' (``rules_layout``)."""
    container = ContainerSpec(
        image,
        command=["sh", "-c", script],
        env=["GUARD_TASK={{.Task.ID}}"],
        user="0:0",
        labels={f"{LABEL}.server": server, TEMPLATE_LABEL: template, LAYOUT_LABEL: layout},
        mounts=[Mount(HOST_ROOT, "/", type="bind")],
        cap_drop=["ALL"],
        cap_add=GUARD_CAPABILITIES,
        stop_grace_period=10 * 10**9,
        healthcheck=Healthcheck(
            test=["CMD-SHELL", health], interval=10**9, timeout=5 * 10**9, retries=3
        ),
    )
    template_spec = TaskTemplate(
        container,
        # Its output is mostly the usage reports (a line every 2 s): kept to 2 MB a node.
        log_driver=DriverConfig("json-file", {"max-size": "1m", "max-file": "2"}),
        resources=Resources(cpu_limit=GUARD_NANO_CPUS, mem_limit=GUARD_MEMORY),
        restart_policy=RestartPolicy(condition="any", delay=10**9),
        networks=["host"],  # the node's own network: its rules are the node's
    )
    return {
        "task_template": template_spec,
        "name": guard_service_name(server),
        "labels": {f"{LABEL}.server": server, f"{LABEL}.role": "guard"},
        "mode": ServiceMode("global"),
        "update_config": UpdateConfig(parallelism=0, order=order),
    }
