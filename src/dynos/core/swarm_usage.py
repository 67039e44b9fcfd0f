"""What a swarm dyno uses, wherever it runs: its memory (R14, the metrics), its CPU seconds
(the metrics' load), and whether the kernel killed it at its memory limit (R15).

Pure: the guard's report lines in, the readings by container out; the program of the one-shot
job that asks a node's engine whether a container was killed at its limit. The shell is
``backends/swarm_usage.py``.

The manager cannot read another node's cgroups, so every node's guard (``core/swarm_guard``)
runs the usage reporter (``backends/container_cgroups.py`` as a program) and its lines reach
the server through ``docker service logs`` of the guard. Swarm's task status says an exit
status only (``task: non-zero exit (137)``), never that the kernel killed the task at its
memory limit: that is on the node's engine only (``State.OOMKilled``), asked through the
manager's own engine, or through a one-shot job on the task's node (as a restart's stop is,
``core/swarm_restart.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# A report line (backends/container_cgroups.py prints them there: it imports no dynos module).
REPORT_PREFIX = "dynos-usage "
REPORT_SECONDS = 2  # how often each guard reports its node's containers
STALE_AFTER = 10.0  # seconds after which a container's last reading no longer counts
KILLED_STATUS = 137  # SIGKILL: the exit of a task the kernel may have killed at its limit
OOM_KILLED = 3  # the check job's exit status for a container the kernel killed at its limit

_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Reading:
    memory: int  # bytes, as ``docker stats`` counts them (less the page cache it can drop)
    cpu_seconds: float
    at: float


def parse_report(line: str) -> dict[str, tuple[int, float]]:
    """A guard's report line as {container id: (memory bytes, CPU seconds)}; anything else
    (the guard's own warnings, a torn line) is no reading: empty."""
    if not line.startswith(REPORT_PREFIX):
        return {}
    try:
        said = json.loads(line[len(REPORT_PREFIX) :])
    except ValueError:
        return {}
    readings: dict[str, tuple[int, float]] = {}
    for container, value in said.items() if isinstance(said, dict) else ():
        if not (_CONTAINER_ID.fullmatch(str(container)) and isinstance(value, list)):
            continue
        numbers = len(value) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        if numbers:
            readings[container] = (int(value[0]), float(value[1]))
    return readings


@dataclass
class UsageReadings:
    """The newest reading of every container the guards report, each kept STALE_AFTER."""

    readings: dict[str, Reading] = field(default_factory=dict)

    def take(self, line: str, now: float) -> bool:
        """Whether ``line`` was a report (an empty one, from a node without containers,
        too)."""
        if not line.startswith(REPORT_PREFIX):
            return False
        for container, (memory, cpu) in parse_report(line).items():
            self.readings[container] = Reading(memory, cpu, now)
        if len(self.readings) > 64:  # containers gone from their nodes: forgotten
            self.readings = {c: r for c, r in self.readings.items() if not self._stale(r, now)}
        return True

    def of(self, container_id: str, now: float) -> Reading | None:
        reading = self.readings.get(container_id)
        return None if reading is None or self._stale(reading, now) else reading

    @staticmethod
    def _stale(reading: Reading, now: float) -> bool:
        return now - reading.at > STALE_AFTER


def may_be_memory_kill(status: int, stopping: bool) -> bool:
    """Whether a dyno's end is worth asking its engine about: killed (137) while nobody was
    stopping it. A stop's SIGKILL after the grace is R12's, not R15's."""
    return status == KILLED_STATUS and not stopping


def oom_killed(container: Mapping[str, object]) -> bool:
    """Whether the engine's inspection of a container says the kernel killed it at its
    memory limit."""
    state = container.get("State")
    return isinstance(state, Mapping) and state.get("OOMKilled") is True


def check_job_name(server: str, task_id: str) -> str:
    """The check job's service name: its server's and the task's (at most 63)."""
    return f"dynos-{server[:8]}-oomcheck-{task_id[:25]}"


# The check job's program (python3 of the stack image): one GET of the container over its
# node's socket; exit OOM_KILLED when the kernel killed it at its limit, 0 when not, 2 when the
# engine behind the socket has no such container (the node's socket is elsewhere), 1 otherwise.
CHECK_SCRIPT = f"""
import http.client, json, socket, sys
class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(sys.argv[2])
engine = Engine("localhost", timeout=30)
engine.request("GET", "/containers/%s/json" % sys.argv[1])
answer = engine.getresponse()
body = answer.read()
if answer.status != 200:
    print(answer.status, body.decode(errors="replace").strip())
    sys.exit(2 if answer.status == 404 else 1)
killed = json.loads(body).get("State", {{}}).get("OOMKilled") is True
print("OOMKilled", killed)
sys.exit({OOM_KILLED} if killed else 0)
"""


def check_command(container_id: str, socket: str) -> list[str]:
    """The check job's command for ``container_id`` (ValueError for what is not a container
    id), its node's socket at ``socket`` in the job."""
    if not re.fullmatch(r"[0-9a-f]{12,64}", container_id):
        raise ValueError(f"{container_id!r} is not a container id")
    return ["python3", "-I", "-c", CHECK_SCRIPT, container_id, socket]
