"""The reconcile planner: desired formation + running dynos -> what to start and stop.

``plan_actions`` is pure: it reads snapshots and a clock value and returns actions; the
manager carries them out. Running it again before the actions finish is safe: a dyno that is
already stopping is left alone, and a dyno name is never started twice.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from dynos.core.sizes import DynoSize
from dynos.core.states import DynoState


@dataclass(frozen=True)
class DesiredProcess:
    type: str
    quantity: int
    size: DynoSize
    command: str


@dataclass(frozen=True)
class DesiredApp:
    app_id: str
    release_version: int
    processes: tuple[DesiredProcess, ...]


@dataclass(frozen=True)
class RunningDyno:
    """What the planner needs to know of a dyno the manager tracks."""

    app_id: str
    type: str
    number: int
    release_version: int
    size: DynoSize
    command: str
    state: DynoState
    stopping: bool = False
    restart_requested: bool = False
    restart_at: float | None = None  # set while crashed: when the policy allows a restart
    one_off: bool = False  # run.NNNN: outside the formation, never restarted

    @property
    def name(self) -> str:
        return f"{self.type}.{self.number}"


@dataclass(frozen=True)
class StartDyno:
    app_id: str
    type: str
    number: int
    release_version: int
    size: DynoSize
    command: str

    @property
    def name(self) -> str:
        return f"{self.type}.{self.number}"


@dataclass(frozen=True)
class StopDyno:
    app_id: str
    name: str
    reason: str  # "scale" (gone from the formation) or "restart" (replaced by a new one)


Action = StartDyno | StopDyno


def plan_actions(
    desired: Sequence[DesiredApp],
    running: Sequence[RunningDyno],
    now: float,
    *,
    held: Set[tuple[str, str]] = frozenset(),
    preboot: Set[tuple[str, str]] = frozenset(),
) -> list[Action]:
    """Stops first (highest-numbered dynos first), then starts, lowest number first.

    Replacements (new release, new size, restart request) roll: a process type has at most one
    dyno being replaced at a time, and none while any of its dynos is starting or stopping, so
    the others keep serving. A crashed dyno is replaced at once: it serves nothing anyway.
    An idle dyno is left asleep until the manager wakes it, whatever changed meanwhile.

    ``held``: (app id, type) pairs a preboot is replacing (core/preboot.py): left alone,
    no start, no stop. ``preboot``: pairs whose serving dynos a preboot replaces: an
    outdated one that is up is left to it (a crashed one is replaced here, as always).
    """
    wanted = {app.app_id: app for app in desired}
    stops: list[StopDyno] = []
    starts: list[StartDyno] = []
    present = {(d.app_id, d.name) for d in running}
    busy = {
        (d.app_id, d.type)
        for d in running
        if d.stopping or d.state in (DynoState.STARTING, DynoState.DOWN)
    }
    for app in desired:
        for process in app.processes:
            if (app.app_id, process.type) in held:
                continue
            for number in range(1, process.quantity + 1):
                if (app.app_id, f"{process.type}.{number}") not in present:
                    starts.append(_start(app, process, number))
                    busy.add((app.app_id, process.type))
    for dyno in sorted(running, key=lambda d: (d.app_id, d.type, d.number)):
        if dyno.stopping:
            continue
        if dyno.one_off:  # the formation does not own it: only its app's destruction stops it
            if dyno.app_id not in wanted:
                stops.append(StopDyno(dyno.app_id, dyno.name, "scale"))
            continue
        if (dyno.app_id, dyno.type) in held:
            continue
        target = wanted.get(dyno.app_id)
        wanted_process = _process(target, dyno.type)
        if target is None or wanted_process is None or dyno.number > wanted_process.quantity:
            stops.append(StopDyno(dyno.app_id, dyno.name, "scale"))
        elif dyno.state is DynoState.DOWN:  # stopped to be replaced: its successor starts
            starts.append(_start(target, wanted_process, dyno.number))
        elif dyno.state is DynoState.IDLE:
            continue
        elif _outdated(dyno, target, wanted_process):
            if dyno.state is DynoState.CRASHED:
                stops.append(StopDyno(dyno.app_id, dyno.name, "restart"))
            elif (dyno.app_id, dyno.type) in preboot:
                continue  # the preboot starts its replacement beside it (manager/preboot.py)
            elif (dyno.app_id, dyno.type) not in busy:
                stops.append(StopDyno(dyno.app_id, dyno.name, "restart"))
                busy.add((dyno.app_id, dyno.type))
        elif (
            dyno.state is DynoState.CRASHED
            and dyno.restart_at is not None
            and dyno.restart_at <= now
        ):
            starts.append(_start(target, wanted_process, dyno.number))
    stops.sort(key=lambda stop: -int(stop.name.rsplit(".", 1)[1]))
    starts.sort(key=lambda start: (start.app_id, start.type, start.number))
    return [*stops, *starts]


def _outdated(dyno: RunningDyno, app: DesiredApp, process: DesiredProcess) -> bool:
    return (
        dyno.restart_requested
        or dyno.release_version != app.release_version
        or dyno.size != process.size
        or dyno.command != process.command
    )


def next_deadline(running: Sequence[RunningDyno]) -> float | None:
    """The earliest time a crashed dyno may restart, for the manager's sleep."""
    times = [d.restart_at for d in running if d.state is DynoState.CRASHED and d.restart_at]
    return min(times, default=None)


def _process(app: DesiredApp | None, type_: str) -> DesiredProcess | None:
    if app is None:
        return None
    return next((p for p in app.processes if p.type == type_), None)


def _start(app: DesiredApp, process: DesiredProcess, number: int) -> StartDyno:
    return StartDyno(
        app.app_id, process.type, number, app.release_version, process.size, process.command
    )
