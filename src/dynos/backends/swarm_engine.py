"""The swarm backend's engine calls: a service spec as the API's arguments, and the tasks and
nodes read back (blocking: the backend runs them in threads); a task's output followed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from docker.types import (
    ContainerSpec,
    Placement,
    PlacementPreference,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
    UpdateConfig,
)

from dynos.backends.local import LINE_LIMIT, pump_lines
from dynos.core.swarm import ServiceSpec, TaskView, task_view

Nodes = dict[str, tuple[str, str, bool]]  # node id → (hostname, address, down)


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
        placement=Placement(preferences=[PlacementPreference("spread", spec.placement_spread)]),
        force_update=force,
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
