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

import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dynos.core.swarm import NANO, TaskView, replicas_for

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
    (None: it had none yet), whether every dyno of its service stopped with it, and the
    grace its stop was given (0: a kill), which its task's stop gets."""

    task: TaskView | None
    whole: bool
    grace: float


def whole_type(staying: Collection[int]) -> bool:
    """Whether a restart covers the whole type: no other slot of its service keeps a dyno
    once the stops that came together are done (a lone dyno, or a type stopped at once)."""
    return not staying


def mechanism(
    replacement: Replacement, manager_node: str, down: Collection[str], condition: str = "any"
) -> Mechanism:
    """How the successor's start replaces the stopped dyno's task: ``force`` (every task of
    the service, start-first) for a whole type, when the task cannot be reached (no
    container yet, its node down) or when Swarm would not replace a stopped container (a
    service whose restart ``condition`` is not ``any``: one adopted from an older server,
    whose dyno may exit 0 on SIGTERM); else its container stopped by ``manager`` (the task
    runs on the manager's node) or by a ``job`` on the task's node."""
    task = replacement.task
    if replacement.whole or condition != "any" or task is None or not task.container_id:
        return "force"
    if not task.node_id or task.node_id in down:
        return "force"
    return "manager" if task.node_id == manager_node else "job"


def node_unusable(node: Mapping[str, object]) -> str:
    """Why a node (as the engine inspects it) takes no stop job and no new task: ``down``,
    ``paused``, ``drained``; empty when it does. Such a node's dyno is forced instead."""
    spec, status = node.get("Spec"), node.get("Status")
    availability = spec.get("Availability", "active") if isinstance(spec, Mapping) else "active"
    state = status.get("State", "ready") if isinstance(status, Mapping) else "ready"
    if state != "ready":
        return str(state)
    return {"pause": "paused", "drain": "drained"}.get(str(availability), "")


def socket_path_ok(path: str) -> bool:
    """Whether an engine label's socket path may be bind-mounted into the job: absolute,
    normalized (no ``..``), its name ending in ``.sock``: never ``/``, ``/etc`` or the like."""
    parts = path.split("/")
    return (
        path.startswith("/")
        and ".." not in parts
        and path.endswith(".sock")
        and posixpath.normpath(path) == path
    )


def node_socket(engine_labels: Mapping[str, str] | None) -> str:
    """Where a node's engine socket is, on that node: its engine label when that is a
    socket path (``socket_path_ok``), else the usual."""
    path = (engine_labels or {}).get(SOCKET_LABEL, "")
    return path if socket_path_ok(path) else DEFAULT_SOCKET


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
    # -I: no PYTHON* variable of the image, no user site, no current directory on the path.
    seconds = str(stop_seconds(grace))
    return ["python3", "-I", "-c", STOP_SCRIPT, container_id, seconds, JOB_SOCKET]


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


def job_failure(tasks: Sequence[TaskView], socket: str) -> str:
    """Why a failed job failed, as the server's log says it (``socket``: the node's socket
    path the job was given)."""
    ended = [t for t in tasks if t.ended]
    if any(t.exit_code == NO_SUCH_CONTAINER for t in ended):
        # The task was seen running just before the job was made: a container gone since
        # is possible, another engine behind the socket more likely.
        return (
            f"the engine behind {socket} on its node has no such container: is the node's "
            f"engine socket elsewhere? Say where with dockerd --label {SOCKET_LABEL}=PATH"
        )
    said = "; ".join(t.error or f"exit status {t.exit_code}" for t in ended)
    return f"the stop job on its node failed: {said}"


def task_status(task: Mapping[str, object]) -> str:
    """A task of the engine's API as one line of the server's log: its state, error and
    message (why a job failed or never ran: no such image, no suitable node...)."""
    status = task.get("Status")
    said = status if isinstance(status, Mapping) else {}
    parts = [str(said.get(k) or "") for k in ("State", "Err", "Message")]
    return f"task {task.get('ID', '?')}: " + (", ".join(p for p in parts if p) or "no status")


def replaced_in_slot(old: TaskView, tasks: Sequence[TaskView]) -> bool:
    """Whether Swarm made the task that takes ``old``'s place: another task of its slot,
    not ended and meant to run (it waits for the restart delay, then runs); not one that
    Swarm is shutting down (an update's or a scale-down's)."""
    return any(
        t.slot == old.slot
        and t.id != old.id
        and not t.ended
        and t.desired_state in ("ready", "running")
        for t in tasks
    )


def no_new_task(slot: int, wait: float, attempts: int, window_ns: int) -> str:
    """Why a restart gave up on a slot: Swarm made no new task there. Its restart policy
    counts these stops with the dyno's crashes, ``attempts`` per ``window_ns``."""
    return (
        f"Swarm started no new task in slot {slot} within {wait:g} s: Swarm may have reached "
        f"its restart limit of {attempts} in {window_ns / NANO:g} s for this slot"
    )


def force_after_restart(slot: int, staying: Collection[int], claimed: bool) -> bool:
    """Whether a slot whose own restart failed still needs the service forced: only while
    a dyno stays in it (not scaled down, stopped or idled meanwhile) and that dyno has
    claimed no task yet (one Swarm started elsewhere, its node down, is already new)."""
    return slot in staying and not claimed


def force_without_successor(slot: int, staying: Collection[int]) -> bool:
    """Whether a slot whose dyno stopped to be replaced, and whose successor did not
    start, needs the service forced: only while the slot is within the replicas the
    staying dynos need. Above them (a scale-down came first), fewer replicas end its task."""
    return slot <= replicas_for(list(staying))
