"""One-shot jobs on a swarm node: the only way the manager has to reach another node's engine.

A job is a ``replicated-job`` service constrained to the node: the stack image as the guard's
(pinned by digest), root with every capability dropped, 64 MiB, the node's engine socket
bind-mounted read-only, a program of the server's run by ``python3 -I``. It is removed when it
ends, when it does not end in time, and (by its name) when the server's close cancels it while
the engine is still making it; one a killed server left is removed at the next server's start
(``swarm_adoption.leftover_services``). A restart's stop (swarm_restart.py) and the check
whether the kernel killed a task at its memory limit (swarm_usage.py) run this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from docker.types import ContainerSpec, Mount, Placement, RestartPolicy, ServiceMode, TaskTemplate

from dynos.backends.docker import ENGINE_ERRORS
from dynos.core.containers import LABEL
from dynos.core.swarm import TaskView, task_view
from dynos.core.swarm_restart import (
    DEFAULT_SOCKET,
    JOB_SOCKET,
    SOCKET_LABEL,
    JobState,
    job_state,
    node_socket,
    task_status,
)

log = logging.getLogger("dynos")
JOB_ROLES = ("restart", "oomcheck")  # the roles (labels) of the server's one-shot jobs
POLL = 0.5  # seconds between reads of a job's tasks
JOB_MEMORY = 64 * 1024 * 1024
JOB_LOG_TAIL = 20  # lines of a failed job's output in the server's log


class NodeJobs:
    """Runs one-shot programs on a node, with its engine's socket at JOB_SOCKET."""

    def __init__(
        self,
        api: Any,
        server: str,
        image: Callable[[], str],  # the stack image as the nodes pull it (blocking)
        call: Callable[..., Awaitable[Any]],  # runs a blocking call in the backend's threads
    ) -> None:
        self._api = api
        self.server = server
        self._image = image
        self._call = call

    async def run(
        self,
        name: str,
        role: str,
        node: dict[str, Any],
        command: list[str],
        timeout: float,
        answers: Collection[int] = (),
    ) -> tuple[JobState, list[TaskView], str]:
        """Run ``command`` on ``node`` (as the engine inspects it) as the job ``name``:
        ``done`` (exit 0), ``failed`` (its tasks say how: an exit status in ``answers`` is
        the program's answer, not logged as a failure) or ``waiting`` (not ended within
        ``timeout``), its tasks, and the node's socket path it was given."""
        assert role in JOB_ROLES
        node_id = str(node.get("ID", ""))
        engine = ((node.get("Description") or {}).get("Engine") or {}).get("Labels") or {}
        socket = node_socket(engine)
        if engine.get(SOCKET_LABEL) and socket == DEFAULT_SOCKET:
            log.warning(
                "swarm: node %s's %s label (%r) is no absolute .sock path: using %s",
                node_id,
                SOCKET_LABEL,
                engine[SOCKET_LABEL],
                DEFAULT_SOCKET,
            )
        image = await self._call(self._image)
        container = ContainerSpec(
            image,
            command=command,
            user="0:0",  # the socket is root's; no capability is needed to use it
            labels={f"{LABEL}.server": self.server},
            mounts=[Mount(JOB_SOCKET, socket, type="bind", read_only=True)],
            cap_drop=["ALL"],
        )
        body = {
            "task_template": TaskTemplate(
                container,
                resources={"Limits": {"MemoryBytes": JOB_MEMORY, "Pids": 64}},  # type: ignore[arg-type]
                restart_policy=RestartPolicy(condition="none"),  # one try
                placement=Placement(constraints=[f"node.id=={node_id}"]),
            ),
            "name": name,
            "labels": {f"{LABEL}.server": self.server, f"{LABEL}.role": role},
            "mode": ServiceMode("replicated-job", replicas=1),
        }
        # Shielded: a cancel (the server's close) during the call leaves the engine making
        # the job; the finally waits for that, then removes it by its name.
        creating = asyncio.ensure_future(self._call(self._api.create_service, **body))
        try:
            await asyncio.shield(creating)
            state, tasks = await self._wait(name, timeout, answers)
            return state, tasks, socket
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(creating)
            with contextlib.suppress(*ENGINE_ERRORS):
                await self._call(self._api.remove_service, name)

    async def _wait(
        self, job: str, timeout: float, answers: Collection[int]
    ) -> tuple[JobState, list[TaskView]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self._call(self._api.tasks, filters={"service": job})
            tasks = [task_view(t) for t in found]
            state = job_state(tasks)
            if state == "done" or any(t.ended and t.exit_code in answers for t in tasks):
                return state, tasks
            if state == "failed" or loop.time() >= deadline:
                await self._report(job, found)
                return state, tasks
            await asyncio.sleep(POLL)

    async def _report(self, job: str, tasks: list[dict[str, Any]]) -> None:
        """A failed or stuck job's tasks and last output, in the server's log before it goes."""
        for task in tasks:
            log.warning("swarm: job %s: %s", job, task_status(task))
        with contextlib.suppress(*ENGINE_ERRORS):
            said = await self._call(
                self._api.service_logs, job, stdout=True, stderr=True, tail=JOB_LOG_TAIL
            )
            for line in bytes(said).decode(errors="replace").splitlines():
                log.warning("swarm: job %s said: %s", job, line)
