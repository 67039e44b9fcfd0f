"""The swarm backend's restart of one dyno (``core/swarm_restart.py``): its task's container
stopped with the dyno's grace, on the manager's engine or by a one-shot job on the task's
node, then Swarm's replacement in the slot awaited. False: the caller forces the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import docker.errors
from docker.types import ContainerSpec, Mount, Placement, RestartPolicy, ServiceMode, TaskTemplate

from dynos.backends.docker import ENGINE_ERRORS
from dynos.core.containers import LABEL
from dynos.core.swarm import TaskView, task_view
from dynos.core.swarm_restart import (
    JOB_SOCKET,
    Mechanism,
    job_command,
    job_failure,
    job_name,
    job_state,
    node_socket,
    replaced_in_slot,
    stop_seconds,
)
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
POLL = 0.5  # seconds between reads of a job's or a slot's tasks
JOB_MARGIN = 60.0  # seconds past the grace a job has to start (its image is on the node) and end
# Seconds after the stop for Swarm's new task in the slot (it makes it at once, and starts it
# after the restart delay, 2 s): none means its restart policy gave up (3 in a minute).
REPLACE_WAIT = 20.0
JOB_MEMORY = 64 * 1024 * 1024


class SlotRestarts:
    """Stops one task's container so that Swarm replaces it in its slot."""

    def __init__(
        self,
        api: Any,
        server: str,
        image: Callable[[], str],  # the stack image as the nodes pull it (blocking)
        call: Callable[..., Awaitable[Any]],  # runs a blocking call in the backend's threads
    ) -> None:
        self._api = api
        self._server = server
        self._image = image
        self._call = call

    async def replace(self, service_id: str, task: TaskView, how: Mechanism, grace: float) -> bool:
        """Stop ``task`` (``how``: ``manager`` or ``job``) and wait for Swarm's new task in
        its slot. False, with a line in the server's log, when either did not happen."""
        try:
            if how == "manager":
                with contextlib.suppress(docker.errors.NotFound):  # gone: its task ended
                    await self._call(self._api.stop, task.container_id, stop_seconds(grace))
            else:
                await self._job(task, grace)
            await self._replacement(service_id, task)
        except (PlatformError, *ENGINE_ERRORS) as exc:
            message = exc.message if isinstance(exc, PlatformError) else str(exc)
            log.warning(
                "swarm: task %s of slot %d not restarted alone (%s): forcing the service's update",
                task.id,
                task.slot,
                message,
            )
            return False
        log.info(
            "swarm: task %s of slot %d stopped (%s), Swarm replaces it", task.id, task.slot, how
        )
        return True

    async def _job(self, task: TaskView, grace: float) -> None:
        node = await self._call(self._api.inspect_node, task.node_id)
        engine = ((node.get("Description") or {}).get("Engine") or {}).get("Labels")
        image = await self._call(self._image)
        container = ContainerSpec(
            image,
            command=job_command(task.container_id, grace),
            user="0:0",  # the socket is root's; no capability is needed to use it
            labels={f"{LABEL}.server": self._server},
            mounts=[Mount(JOB_SOCKET, node_socket(engine), type="bind")],
            cap_drop=["ALL"],
        )
        body = {
            "task_template": TaskTemplate(
                container,
                resources={"Limits": {"MemoryBytes": JOB_MEMORY, "Pids": 64}},  # type: ignore[arg-type]
                restart_policy=RestartPolicy(condition="none"),  # one try; the caller forces
                placement=Placement(constraints=[f"node.id=={task.node_id}"]),
            ),
            "name": job_name(self._server, task.id),
            "labels": {f"{LABEL}.server": self._server, f"{LABEL}.role": "restart"},
            "mode": ServiceMode("replicated-job", replicas=1),
        }
        created = await self._call(self._api.create_service, **body)
        job = str(created["ID"])
        try:
            await self._wait_job(job, grace + JOB_MARGIN)
        finally:
            with contextlib.suppress(*ENGINE_ERRORS):
                await self._call(self._api.remove_service, job)

    async def _wait_job(self, job: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = await self._call(self._api.tasks, filters={"service": job})
            tasks = [task_view(t) for t in found]
            state = job_state(tasks)
            if state == "done":
                return
            if state == "failed":
                raise PlatformError(job_failure(tasks))
            await asyncio.sleep(POLL)
        raise PlatformError(f"the stop job on its node did not end within {timeout:g} s")

    async def _replacement(self, service_id: str, old: TaskView) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLACE_WAIT
        while loop.time() < deadline:
            found = await self._call(self._api.tasks, filters={"service": service_id})
            if replaced_in_slot(old, [task_view(t) for t in found]):
                return
            await asyncio.sleep(POLL)
        raise PlatformError(f"Swarm started no new task in slot {old.slot}")
