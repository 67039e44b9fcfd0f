"""The swarm backend's rules: a process type as a Swarm service, its tasks as dynos.

Pure: a formation's type, a release's image and a size in, the service's spec out; the
tasks Swarm reports in, which dyno each one is and where the router reaches it out. The
shell is ``backends/swarm.py``.

One service per app and process type, replicas = the type's quantity; each task's ``DYNO``
is the type and its slot (``web.2``), which is also the manager's name for it. The kernel
here lacks IPVS, so no routing mesh and no VIP: the service's port is published in host
mode, at a port the node's engine picks per task, and the router goes to the task's node
address and that port.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from dynos.core.containers import LABEL, size_limits
from dynos.core.sizes import DynoSize

SERVICE_PORT = 5000  # what PORT says in every web task: each task has its own network
NANO = 1_000_000_000
# Swarm's own restarts of a crashed task: after a delay that Swarm does not grow, so a few
# attempts within a window, then the manager's back-off (core/restart_policy.py) takes over.
RESTART_DELAY_NS = 2 * NANO
RESTART_ATTEMPTS = 3
RESTART_WINDOW_NS = 60 * NANO
TEMPLATE_LABEL = f"{LABEL}.template"  # which formation of the type a task was made from
# The environment the manager gives per dyno that a service gives per task instead.
PER_TASK = ("DYNO", "PORT")

_NAME_PART = re.compile(r"[^a-z0-9-]+")


def service_name(server: str, app_name: str, process_type: str) -> str:
    """A valid service name (letters, digits, dashes; at most 63), unique per server, app
    and type: ``dynos-<server>-<app>-<type>``."""
    app = _NAME_PART.sub("-", app_name.lower()).strip("-")
    kind = _NAME_PART.sub("-", process_type.lower()).strip("-")
    return f"dynos-{server[:8]}-{app}-{kind}"[:63].rstrip("-")


def dyno_slot(name: str) -> tuple[str, int]:
    """``web.2`` → (``web``, 2); ValueError for a name that is not a formation's dyno."""
    process_type, _, number = name.rpartition(".")
    if not process_type or not number.isdigit() or int(number) < 1:
        raise ValueError(f"{name!r} is not a dyno of a formation (type.N)")
    return process_type, int(number)


@dataclass(frozen=True)
class ServiceSpec:
    """What the shell hands the engine to create or update a type's service (the SDK's
    ``ServiceMode``, ``Resources``, ``RestartPolicy``, ``UpdateConfig``, ``EndpointSpec``
    are made from these fields)."""

    name: str
    image: str
    command: tuple[str, ...]
    env: tuple[str, ...]  # "K=V", DYNO a template of the task's slot
    labels: Mapping[str, str]  # on the service
    container_labels: Mapping[str, str]  # on each task's container: the template among them
    replicas: int
    mem_limit: int
    nano_cpus: int
    pids_limit: int
    target_port: int | None  # web: published in host mode, the node picks the host port
    stop_grace_ns: int
    user: str
    workdir: str
    # Any end: a dyno that exits, even with 0, is restarted (as on Heroku), and a dyno's own
    # restart is its container stopped (core/swarm_restart.py).
    restart_condition: Literal["none", "on-failure", "any"] = "any"
    restart_delay_ns: int = RESTART_DELAY_NS
    restart_attempts: int = RESTART_ATTEMPTS
    restart_window_ns: int = RESTART_WINDOW_NS
    # Rolling updates start a new task before stopping the one it replaces, one at a time.
    update_order: Literal["start-first", "stop-first"] = "start-first"
    update_parallelism: int = 1
    placement_spread: str = "node.id"  # a type's tasks spread over the nodes
    endpoint_mode: str = "dnsrr"  # no VIP (it needs IPVS)
    template: str = ""
    network: str = ""  # the app's own overlay network (core/swarm_guard.py)
    constraints: tuple[str, ...] = ()  # only nodes its server's guard runs on


def template_id(image: str, command: Sequence[str], env: Mapping[str, str], size: DynoSize) -> str:
    """What a task was made from, as a short digest: two dynos of one type with the same
    template are the same service spec; a new release, config or size changes it."""
    blob = json.dumps([image, list(command), sorted(env.items()), size.name], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def service_env(env: Mapping[str, str], process_type: str, web: bool) -> dict[str, str]:
    """The manager's environment of one dyno as the service's: DYNO from the task's slot,
    PORT the one port every web task binds (in its own network namespace)."""
    out = {k: v for k, v in env.items() if k not in PER_TASK}
    out["DYNO"] = process_type + ".{{.Task.Slot}}"
    if web:
        out["PORT"] = str(SERVICE_PORT)
    return out


def service_spec(
    *,
    name: str,
    image: str,
    command: Sequence[str],
    env: Mapping[str, str],
    process_type: str,
    size: DynoSize,
    replicas: int,
    web: bool,
    labels: Mapping[str, str],
    stop_grace: float,
    user: str,
    workdir: str,
    network: str = "",
    constraints: Sequence[str] = (),
) -> ServiceSpec:
    """A type's service: ``replicas`` tasks of ``image`` at ``size``'s limits (memory at its
    hard limit, CPUs by its share, its process limit), restarted on failure, updated by
    starting new tasks first; a web type's port published in host mode."""
    environment = service_env(env, process_type, web)
    template = template_id(image, command, environment, size)
    limits = size_limits(size)
    return ServiceSpec(
        # One service per release of a type (its template): a new one starts beside the
        # old, whose tasks serve until the manager has stopped its dynos.
        name=f"{name[:54].rstrip('-')}-{template[:8]}",
        image=image,
        command=tuple(command),
        env=tuple(f"{k}={v}" for k, v in sorted(environment.items())),
        labels=dict(labels),
        # Not the service's labels: the docker backend's one-offs on the same engine remove
        # the containers labelled with their server's id at its start.
        container_labels={f"{LABEL}.service": name, TEMPLATE_LABEL: template},
        replicas=replicas,
        mem_limit=limits.mem_limit,
        nano_cpus=size.cpu_share * NANO,
        pids_limit=limits.pids_limit,
        target_port=SERVICE_PORT if web else None,
        stop_grace_ns=int(stop_grace * NANO),
        user=user,
        workdir=workdir,
        template=template,
        network=network,
        constraints=tuple(constraints),
    )


_CONDITIONS = ("none", "on-failure", "any")


def kept_on_adoption(wanted: ServiceSpec, left: Mapping[str, object]) -> ServiceSpec:
    """``wanted`` with what of a dead server's service (``left``: its spec's TaskTemplate,
    as the engine shows it) only this server's defaults or settings change: its restart
    policy (an older server's condition was ``on-failure``) and stop grace. Any change to
    the TaskTemplate has Swarm replace every task, so an adoption would restart each dyno;
    the service keeps them until a new release replaces it."""
    policy = _mapping(left.get("RestartPolicy"))
    container = _mapping(left.get("ContainerSpec"))
    kept: dict[str, object] = {}
    if policy.get("Condition") in _CONDITIONS:
        kept["restart_condition"] = policy["Condition"]
    # Absent keys stay ours: every server sent all four (the SDK's RestartPolicy does).
    for name, key in (
        ("restart_delay_ns", "Delay"),
        ("restart_attempts", "MaxAttempts"),
        ("restart_window_ns", "Window"),
    ):
        if isinstance(policy.get(key), int):
            kept[name] = policy[key]
    if isinstance(container.get("StopGracePeriod"), int):
        kept["stop_grace_ns"] = container["StopGracePeriod"]
    return replace(wanted, **kept)  # type: ignore[arg-type]


# Task states (Swarm's): before a task runs, while it runs, and after.
PENDING_STATES = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
RUNNING = "running"
ENDED_STATES = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})


@dataclass(frozen=True)
class TaskView:
    """One task as the engine reports it (``docker service ps``), reduced to what the
    backend needs."""

    id: str
    slot: int
    node_id: str
    state: str
    desired_state: str
    template: str
    published_port: int | None = None
    exit_code: int | None = None
    error: str = ""
    container_id: str = ""  # on its node's engine, once the node made it

    @property
    def running(self) -> bool:
        return self.state == RUNNING and self.desired_state == RUNNING

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def task_view(task: Mapping[str, object]) -> TaskView:
    """A task of the engine's API (``GET /tasks``) as a :class:`TaskView`."""
    status = _mapping(task.get("Status"))
    spec = _mapping(task.get("Spec"))
    container = _mapping(spec.get("ContainerSpec"))
    labels = _mapping(container.get("Labels"))
    ports = _mapping(status.get("PortStatus")).get("Ports") or []
    published = None
    for port in ports if isinstance(ports, list) else []:
        if isinstance(port, Mapping) and port.get("PublishedPort"):
            published = int(port["PublishedPort"])
            break
    running_as = _mapping(status.get("ContainerStatus"))
    exit_code = running_as.get("ExitCode")
    return TaskView(
        id=str(task.get("ID", "")),
        slot=int(str(task.get("Slot") or 0)),
        node_id=str(task.get("NodeID", "")),
        state=str(status.get("State", "")),
        desired_state=str(task.get("DesiredState", "")),
        template=str(labels.get(TEMPLATE_LABEL, "")),
        published_port=published,
        exit_code=int(str(exit_code)) if exit_code is not None else None,
        error=str(status.get("Err", "")),
        container_id=str(running_as.get("ContainerID") or ""),
    )


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def exit_status(task: TaskView) -> int:
    """A task's end as Heroku shows a dyno's: its exit code; 0 for one shut down without
    one (stopped before it ran), 1 for one that failed or was rejected without one."""
    if task.exit_code is not None:
        return task.exit_code
    return 1 if task.state in ("failed", "rejected") else 0


@dataclass
class Claims:
    """Which task is which dyno: a dyno (the manager's key) claims the first running task of
    its slot and template that no other key claimed, and keeps it until it ends. A stopped
    key's task stays claimed until it is gone, so a restarted dyno waits for a new task."""

    by_key: dict[str, str] = field(default_factory=dict)  # key → task id
    retired: set[str] = field(default_factory=set)  # tasks of stopped dynos, still running

    def claim(
        self, key: str, slot: int, template: str, tasks: Sequence[TaskView], replicas: int = 0
    ) -> TaskView | None:
        """The task ``key`` runs as: the one it claimed, or a new running one of its slot
        and template; else one of its template left running in a slot above the service's
        ``replicas`` (``kept_instead``: Swarm scaled down by ending this slot's task); None
        while there is none."""
        if key in self.by_key:
            mine = self.by_key[key]
            return next((t for t in tasks if t.id == mine), None)
        taken = set(self.by_key.values()) | self.retired
        free = [t for t in tasks if t.running and t.template == template and t.id not in taken]
        ordered = sorted(free, key=lambda t: (t.slot != slot, t.slot, t.id))
        found = next((t for t in ordered if t.slot == slot or slot <= replicas < t.slot), None)
        if found is not None:
            self.by_key[key] = found.id
        return found

    def release(self, key: str, retire: bool = False) -> None:
        task = self.by_key.pop(key, None)
        if retire and task is not None:
            self.retired.add(task)


def replicas_for(slots: Sequence[int]) -> int:
    """The replicas a type's service needs for the dynos (slots) the manager runs: up to the
    highest, so that each of them has its slot."""
    return max(slots, default=0)


def kept_instead(
    slot: int, staying: Sequence[int], task: TaskView, tasks: Sequence[TaskView]
) -> bool:
    """Whether Swarm, lowering the replicas for a dyno stopped in ``slot``, ended another
    slot's task and kept this one's ``task``: it picks by node balance (the nodes with the most
    tasks of the service lose one first), not by slot. So once it wants no more tasks than
    the replicas and this one is among them, the stopped dyno is done, and the staying dyno
    whose task Swarm ended takes this task over when it restarts (``Claims.claim``)."""
    replicas = replicas_for(staying)
    wanted = [t for t in tasks if t.desired_state == RUNNING and not t.ended]
    return slot > replicas and len(wanted) <= replicas and any(t.id == task.id for t in wanted)
