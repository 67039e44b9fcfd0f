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

from dynos.backends.docker import ENGINE_ERRORS
from dynos.backends.swarm_jobs import POLL, NodeJobs
from dynos.core.swarm import ServiceSpec, TaskView, task_view
from dynos.core.swarm_restart import (
    Mechanism,
    job_command,
    job_failure,
    job_name,
    no_new_task,
    node_unusable,
    replaced_in_slot,
    stop_seconds,
)
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
JOB_MARGIN = 60.0  # seconds past the grace a job has to start (its image is on the node) and end
# Seconds after the stop for Swarm's new task in the slot (it makes it at once, and starts it
# after the restart delay, 2 s): none means its restart policy gave up (3 in a minute).
REPLACE_WAIT = 20.0


class SlotRestarts:
    """Stops one task's container so that Swarm replaces it in its slot."""

    def __init__(
        self,
        api: Any,
        jobs: NodeJobs,  # the stop job on another node than the manager's
        call: Callable[..., Awaitable[Any]],  # runs a blocking call in the backend's threads
    ) -> None:
        self._api = api
        self._jobs = jobs
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
        command = job_command(task.container_id, grace)  # ValueError: not a container id
        name = job_name(self._jobs.server, task.id)
        timeout = grace + JOB_MARGIN
        state, tasks, socket = await self._jobs.run(name, "restart", node, command, timeout)
        if state == "failed":
            raise PlatformError(job_failure(tasks, socket))
        if state == "waiting":
            raise PlatformError(f"the stop job on its node did not end within {timeout:g} s")

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
