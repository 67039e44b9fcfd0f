"""What swarm dynos use, wherever they run (``core/swarm_usage.py``): every node's guard
reports its containers' memory and CPU seconds, followed here through ``docker service logs``
of the guard; and whether the kernel killed a task at its memory limit (R15), asked of the
manager's engine, or of the task's node by a one-shot job (swarm_jobs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dynos.backends.base import DynoUsage
from dynos.backends.local import LINE_LIMIT, pump_lines
from dynos.backends.swarm_jobs import NodeJobs
from dynos.core.swarm import TaskView
from dynos.core.swarm_restart import JOB_SOCKET, node_unusable
from dynos.core.swarm_usage import (
    OOM_KILLED,
    REPORT_SECONDS,
    STALE_AFTER,
    UsageReadings,
    check_command,
    check_job_name,
    oom_killed,
)

log = logging.getLogger("dynos")
# Seconds a check job has to start (its image is on the node) and end: a few here. Meanwhile
# the dyno is still routed, the router retrying elsewhere what its dead container refuses.
CHECK_TIMEOUT = 15.0
REFOLLOW = 2.0  # seconds before following the guard's output again, when it ended


class SwarmUsage:
    """The guards' usage reports, and the R15 check of a task that was killed."""

    def __init__(
        self,
        api: Any,
        cli: str,
        guard: str,  # the guard service's name
        jobs: NodeJobs,
        manager_node: str,
        call: Callable[..., Awaitable[Any]],  # runs a blocking call in the backend's threads
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._cli = cli
        self._guard = guard
        self._jobs = jobs
        self._manager_node = manager_node
        self._call = call
        self._clock = clock
        self._readings = UsageReadings()
        self._follower: asyncio.Task[None] | None = None
        self._heard = 0.0  # when the follower started or last had a report

    def follow(self) -> None:
        """Follow the guards' reports (while dynos run: the caller's poll calls this), anew
        when none came for STALE_AFTER: ``docker service logs --follow`` has been seen to
        go quiet without ending once the tasks it follows are replaced (a guard's update)."""
        now = self._clock()
        if self._follower is not None and now - self._heard > STALE_AFTER:
            log.info("swarm: no usage report from the guards for %g s: following anew", STALE_AFTER)
            self._follower.cancel()
            self._follower = None
        if self._follower is None or self._follower.done():
            self._follower, self._heard = asyncio.create_task(self._follow()), now

    def of(self, task: TaskView | None) -> DynoUsage | None:
        """What the task's container uses, as its node's guard last reported it (None: not
        reported yet, or not lately: its node down, the container gone)."""
        said = self._readings.of(task.container_id, self._clock()) if task else None
        return None if said is None else DynoUsage(said.memory, cpu_seconds=said.cpu_seconds)

    async def _follow(self) -> None:
        # From a little before now: the newest report of every node, and no older ones.
        since = f"{2 * REPORT_SECONDS}s"
        while True:
            process = await asyncio.create_subprocess_exec(
                *(self._cli, "service", "logs", "--follow", "--raw", "--since", since),
                self._guard,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=LINE_LIMIT,
            )
            assert process.stdout is not None
            try:
                await pump_lines(process.stdout, self._take)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await asyncio.sleep(REFOLLOW)  # the guard updated or made again: follow anew

    def _take(self, line: str) -> None:
        if self._readings.take(line, self._clock()):
            self._heard = self._clock()

    async def oom_killed(self, task: TaskView) -> bool:
        """Whether the kernel killed ``task``'s container at its memory limit, as its node's
        engine says; False when that cannot be known (its node down, the check failed)."""
        if not task.container_id:
            return False
        try:
            if task.node_id == self._manager_node:
                found = await self._call(self._api.inspect_container, task.container_id)
                return oom_killed(found)
            node_id = task.node_id
            node = await self._call(self._api.inspect_node, node_id)
            if node_unusable(node):
                return False
            command = check_command(task.container_id, JOB_SOCKET)
            name = check_job_name(self._jobs.server, task.id)
            state, tasks, _ = await self._jobs.run(
                name, "oomcheck", node, command, CHECK_TIMEOUT, answers=(OOM_KILLED,)
            )
        except Exception as exc:  # no R15 then, but the dyno's exit is told all the same
            log.warning(
                "swarm: could not ask whether task %s hit its memory limit: %s", task.id, exc
            )
            return False
        killed = state == "failed" and any(t.exit_code == OOM_KILLED for t in tasks)
        said = "killed at its memory limit" if killed else "not killed at its memory limit"
        log.info("swarm: task %s on node %s: %s, its engine says (a job)", task.id, node_id, said)
        return killed

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
