"""The swarm backend's restart of one dyno: which way, and the one-shot job that does it.

Pure: the slots of a type's service and its old task in, how to replace that task out. The
shell is ``backends/swarm_restart.py``.

Swarm has no API that restarts one task: a forced update (``docker service update
--force``) replaces every task of the service, one at a time, each new one started before
the old one stops. That is right when every dyno of the type restarts (and the only way
that keeps a lone web dyno serving throughout), wrong for ``ps:restart web.1`` beside a
``web.2``. A task whose container stops is replaced in its slot by the service's restart
policy (condition ``any``), so one dyno's restart stops its task's container with the
dyno's grace: through the manager's own engine when the task runs there, or through a
one-shot job (a ``replicated-job`` service) on the task's node, which asks that node's
engine over its socket, the only way the manager has to reach another node's engine.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dynos.core.swarm import TaskView

# A node's engine says where its socket is by this engine label (dockerd --label), when not
# at the usual place (the swarm lab's worker: its socket is beside the manager's).
SOCKET_LABEL = "dynos.docker-socket"
DEFAULT_SOCKET = "/var/run/docker.sock"
JOB_SOCKET = "/docker.sock"  # where the job sees its node's socket

Mechanism = Literal["force", "manager", "job"]

_CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}")


@dataclass(frozen=True)
class Replacement:
    """A dyno stopped in a slot that stays, waiting for its successor's start: its task
    (None: it had none yet) and whether every dyno of its service stopped with it."""

    task: TaskView | None
    whole: bool


def whole_type(staying: Collection[int]) -> bool:
    """Whether a restart covers the whole type: no other slot of its service keeps a dyno
    once the stops that came together are done (a lone dyno, or a type stopped at once)."""
    return not staying


def mechanism(replacement: Replacement, manager_node: str, down: Collection[str]) -> Mechanism:
    """How the successor's start replaces the stopped dyno's task: ``force`` (every task of
    the service, start-first) for a whole type, or when the task cannot be reached (no
    container yet, its node down); else its container stopped by ``manager`` (the task runs
    on the manager's node) or by a ``job`` on the task's node."""
    task = replacement.task
    if replacement.whole or task is None or not task.container_id:
        return "force"
    if not task.node_id or task.node_id in down:
        return "force"
    return "manager" if task.node_id == manager_node else "job"


def node_socket(engine_labels: Mapping[str, str] | None) -> str:
    """Where a node's engine socket is, on that node (its engine label, else the usual)."""
    path = (engine_labels or {}).get(SOCKET_LABEL, "")
    return path if path.startswith("/") else DEFAULT_SOCKET


def job_name(server: str, task_id: str) -> str:
    """The one-shot job's service name: its server's and the task's (at most 63)."""
    return f"dynos-{server[:8]}-restart-{task_id[:25]}"


# The job's program: python3 of the stack image, no docker CLI. The engine's own stop (SIGTERM,
# SIGKILL after the grace) answers once the container has stopped: 204, or 304 (stopped
# already). 404: no such container on the engine behind that socket, which is more likely
# another engine's socket (a node whose engine label is missing) than a container gone.
STOP_SCRIPT = """
import http.client, socket, sys
class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(sys.argv[3])
container, grace = sys.argv[1], int(sys.argv[2])
engine = Engine("localhost", timeout=grace + 30)
engine.request("POST", "/containers/%s/stop?t=%d" % (container, grace))
answer = engine.getresponse()
print(answer.status, answer.read().decode(errors="replace").strip())
sys.exit(0 if answer.status in (204, 304) else 2 if answer.status == 404 else 1)
"""


def job_command(container_id: str, grace: float) -> list[str]:
    """The job's command: stop ``container_id`` with ``grace`` (whole seconds, as the
    engine takes it, rounded up). ValueError for what is not a container id."""
    if not _CONTAINER_ID.fullmatch(container_id):
        raise ValueError(f"{container_id!r} is not a container id")
    return ["python3", "-c", STOP_SCRIPT, container_id, str(stop_seconds(grace)), JOB_SOCKET]


def stop_seconds(grace: float) -> int:
    """A grace as the engine's stop takes it: whole seconds, rounded up (never shorter)."""
    return max(0, int(-(-grace // 1)))


NO_SUCH_CONTAINER = 2  # the job's exit status when its socket's engine has no such container

JobState = Literal["waiting", "done", "failed"]


def job_state(tasks: Sequence[TaskView]) -> JobState:
    """A one-shot job's progress from its tasks: ``done`` once one completed, ``failed``
    once one ended otherwise (its restart policy is none: no second try)."""
    if any(t.state == "complete" for t in tasks):
        return "done"
    if any(t.ended for t in tasks):
        return "failed"
    return "waiting"


def job_failure(tasks: Sequence[TaskView]) -> str:
    """Why a failed job failed, as the server's log says it."""
    ended = [t for t in tasks if t.ended]
    if any(t.exit_code == NO_SUCH_CONTAINER for t in ended):
        return (
            "its node's engine has no such container: is the node's engine socket elsewhere "
            f"than {DEFAULT_SOCKET}? Say where with dockerd --label {SOCKET_LABEL}=PATH"
        )
    said = "; ".join(t.error or f"exit status {t.exit_code}" for t in ended)
    return f"the stop job on its node failed: {said}"


def replaced_in_slot(old: TaskView, tasks: Sequence[TaskView]) -> bool:
    """Whether Swarm made the task that takes ``old``'s place: another task of its slot,
    not ended (it waits for the restart delay, then runs)."""
    return any(t.slot == old.slot and t.id != old.id and not t.ended for t in tasks)
