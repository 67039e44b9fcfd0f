"""The swarm backend's restart of one dyno (``core/swarm_restart.py``): its task's container
stopped with the dyno's grace, on the manager's engine or by a one-shot job on the task's
node, then Swarm's replacement in the slot awaited. False: the caller decides whether the
service is forced (``core/swarm_restart.py``'s ``force_after_restart``)."""

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
from dynos.core.swarm import ServiceSpec, TaskView, task_view
from dynos.core.swarm_restart import (
    DEFAULT_SOCKET,
    JOB_SOCKET,
    SOCKET_LABEL,
    Mechanism,
    job_command,
    job_failure,
    job_name,
    job_state,
    no_new_task,
    node_socket,
    node_unusable,
    replaced_in_slot,
    stop_seconds,
    task_status,
)
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
POLL = 0.5  # seconds between reads of a job's or a slot's tasks
JOB_MARGIN = 60.0  # seconds past the grace a job has to start (its image is on the node) and end
# Seconds after the stop for Swarm's new task in the slot (it makes it at once, and starts it
# after the restart delay, 2 s): none means its restart policy gave up (3 in a minute).
REPLACE_WAIT = 20.0
JOB_MEMORY = 64 * 1024 * 1024
JOB_LOG_TAIL = 20  # lines of a failed job's output in the server's log


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

    async def replace(
        self, service: str, spec: ServiceSpec, task: TaskView, how: Mechanism, grace: float
    ) -> bool:
        """Stop ``task`` of the service ``service`` (``how``: ``manager`` or ``job``) and
        wait for Swarm's new task in its slot. False, with a line in the server's log, when
        either did not happen."""
        try:
            node = await self._call(self._api.inspect_node, task.node_id)
            unusable = node_unusable(node)
            if unusable:  # Swarm puts no task there: a forced update places them elsewhere
                raise PlatformError(f"its node is {unusable}")
            if await self._ended(task):
                log.info("swarm: task %s of slot %d ended already", task.id, task.slot)
            elif how == "manager":
                with contextlib.suppress(docker.errors.NotFound):  # gone: its task ended
                    await self._call(self._api.stop, task.container_id, stop_seconds(grace))
            else:
                await self._job(task, node, grace)
            await self._replacement(service, spec, task)
        except (PlatformError, ValueError, *ENGINE_ERRORS) as exc:
            message = exc.message if isinstance(exc, PlatformError) else str(exc)
            log.warning(
                "swarm: task %s of slot %d not restarted alone (%s): forcing the service's "
                "update, unless no dyno waits for the slot any more",
                task.id,
                task.slot,
                message,
            )
            return False
        log.info(
            "swarm: task %s of slot %d stopped (%s), Swarm replaces it", task.id, task.slot, how
        )
        return True

    async def _ended(self, task: TaskView) -> bool:
        """Whether the task ended already (its container exited, or Swarm removed it)."""
        try:
            current = task_view(await self._call(self._api.inspect_task, task.id))
        except docker.errors.NotFound:
            return True
        return current.ended

    async def _job(self, task: TaskView, node: dict[str, Any], grace: float) -> None:
        engine = ((node.get("Description") or {}).get("Engine") or {}).get("Labels") or {}
        socket = node_socket(engine)
        if engine.get(SOCKET_LABEL) and socket == DEFAULT_SOCKET:
            log.warning(
                "swarm: node %s's %s label (%r) is no absolute .sock path: using %s",
                task.node_id,
                SOCKET_LABEL,
                engine[SOCKET_LABEL],
                DEFAULT_SOCKET,
            )
        command = job_command(task.container_id, grace)  # ValueError: not a container id
        image = await self._call(self._image)
        container = ContainerSpec(
            image,
            command=command,
            user="0:0",  # the socket is root's; no capability is needed to use it
            labels={f"{LABEL}.server": self._server},
            mounts=[Mount(JOB_SOCKET, socket, type="bind", read_only=True)],
            cap_drop=["ALL"],
        )
        name = job_name(self._server, task.id)
        body = {
            "task_template": TaskTemplate(
                container,
                resources={"Limits": {"MemoryBytes": JOB_MEMORY, "Pids": 64}},  # type: ignore[arg-type]
                restart_policy=RestartPolicy(condition="none"),  # one try; the caller forces
                placement=Placement(constraints=[f"node.id=={task.node_id}"]),
            ),
            "name": name,
            "labels": {f"{LABEL}.server": self._server, f"{LABEL}.role": "restart"},
            "mode": ServiceMode("replicated-job", replicas=1),
        }
        # Shielded: a cancel (the server's close) during the call leaves the engine making
        # the job; the finally waits for that, then removes it by its name.
        creating = asyncio.ensure_future(self._call(self._api.create_service, **body))
        try:
            await asyncio.shield(creating)
            await self._wait_job(name, grace + JOB_MARGIN, socket)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(creating)
            with contextlib.suppress(*ENGINE_ERRORS):
                await self._call(self._api.remove_service, name)

    async def _wait_job(self, job: str, timeout: float, socket: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = await self._call(self._api.tasks, filters={"service": job})
            tasks = [task_view(t) for t in found]
            state = job_state(tasks)
            if state == "done":
                return
            if state == "failed":
                await self._report(job, found)
                raise PlatformError(job_failure(tasks, socket))
            await asyncio.sleep(POLL)
        with contextlib.suppress(*ENGINE_ERRORS):
            await self._report(job, await self._call(self._api.tasks, filters={"service": job}))
        raise PlatformError(f"the stop job on its node did not end within {timeout:g} s")

    async def _report(self, job: str, tasks: list[dict[str, Any]]) -> None:
        """A failed or stuck job's tasks and last output, in the server's log before it goes."""
        for task in tasks:
            log.warning("swarm: restart job %s: %s", job, task_status(task))
        with contextlib.suppress(*ENGINE_ERRORS):
            said = await self._call(
                self._api.service_logs, job, stdout=True, stderr=True, tail=JOB_LOG_TAIL
            )
            for line in bytes(said).decode(errors="replace").splitlines():
                log.warning("swarm: restart job %s said: %s", job, line)

    async def _replacement(self, service: str, spec: ServiceSpec, old: TaskView) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLACE_WAIT
        while loop.time() < deadline:
            found = await self._call(self._api.tasks, filters={"service": service})
            if replaced_in_slot(old, [task_view(t) for t in found]):
                return
            await asyncio.sleep(POLL)
        limit = (spec.restart_attempts, spec.restart_window_ns)
        raise PlatformError(no_new_task(old.slot, REPLACE_WAIT, *limit))
