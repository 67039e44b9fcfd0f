"""Preboot: a new release's web dynos start beside the old ones, and take the traffic only
once every one of them passed its health checks. Pure: the phases of one app's preboot,
their transition table, and what each observation of the dynos leads to.

::

    BOOTING ──(all new dynos up: their startup checks passed)──▶ SWITCHED ──(old gone)──▶ DONE
       │
       └─(a new dyno crashed, the deadline passed, a newer release)─▶ FAILING ──(new gone)──▶ FAILED

- ``BOOTING``: the old dynos serve, under their retired names (:func:`retired_name`), while
  the new ones boot under the formation's names (``web.1`` .. ``web.N``, as Heroku keeps
  them). The router sees none of the new ones yet, even one already up.
- ``SWITCHED``: in one change of the routing table the new dynos take every new request and
  the old ones none; the old ones then drain (the requests they serve finish) and stop.
- ``FAILING``: the new dynos are stopped; the old ones never stopped serving.
- ``FAILED``: the old dynos get their names back and serve on; this release's web dynos are
  not tried again (the manager remembers the target) until a newer release or a restart.

The manager's shell (manager/preboot.py) feeds :func:`advance` what it sees and carries the
steps out; nothing here reads a clock or touches a process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from dynos.core.states import DynoState


class PrebootPhase(StrEnum):
    BOOTING = "booting"
    SWITCHED = "switched"
    FAILING = "failing"
    DONE = "done"
    FAILED = "failed"


TRANSITIONS: dict[PrebootPhase, frozenset[PrebootPhase]] = {
    PrebootPhase.BOOTING: frozenset({PrebootPhase.SWITCHED, PrebootPhase.FAILING}),
    PrebootPhase.SWITCHED: frozenset({PrebootPhase.DONE}),
    PrebootPhase.FAILING: frozenset({PrebootPhase.FAILED}),
    PrebootPhase.DONE: frozenset(),
    PrebootPhase.FAILED: frozenset(),
}


class IllegalPrebootMove(ValueError):
    """A move the table does not allow: a bug in the caller."""


@dataclass(frozen=True)
class Target:
    """What the web dynos should run: a preboot is for one target, and one that failed is
    not tried again for the same target."""

    release_version: int
    size: str
    command: str
    quantity: int


@dataclass(frozen=True)
class Preboot:
    target: Target
    new: tuple[str, ...]  # the new dynos' names: web.1 .. web.N
    old: tuple[str, ...]  # the old dynos' retired names
    deadline: float  # clock time by which every new dyno must have passed its checks
    phase: PrebootPhase = PrebootPhase.BOOTING
    reason: str = ""  # why it failed

    @property
    def finished(self) -> bool:
        return self.phase in (PrebootPhase.DONE, PrebootPhase.FAILED)

    def move_to(self, phase: PrebootPhase, reason: str = "") -> Preboot:
        if phase not in TRANSITIONS[self.phase]:
            raise IllegalPrebootMove(f"a preboot cannot go from {self.phase} to {phase}")
        return replace(self, phase=phase, reason=reason or self.reason)


# -- what the shell is told to do -------------------------------------------------------------


@dataclass(frozen=True)
class SwitchTraffic:
    """Route the new dynos and take the old ones out, in one change; then stop the old ones
    (each drains first)."""

    new: tuple[str, ...]
    old: tuple[str, ...]


@dataclass(frozen=True)
class StopNew:
    """The preboot failed: stop the new dynos, say why; the old ones serve on."""

    names: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class RestoreOld:
    """The new dynos are gone: the old ones take their names back."""

    names: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Finished:
    """The old dynos are gone: the preboot is done."""

    new: tuple[str, ...]


Step = SwitchTraffic | StopNew | RestoreOld | Finished

_GONE = (DynoState.CRASHED, DynoState.DOWN, DynoState.COMPLETE, DynoState.IDLE)


def advance(
    preboot: Preboot,
    new_states: Mapping[str, DynoState | None],
    old_left: int,
    target: Target | None,
    now: float,
) -> tuple[Preboot, list[Step]]:
    """The preboot after this observation, and what to do now.

    ``new_states``: each new dyno's state, None once it is gone; ``old_left``: how many old
    dynos are still tracked; ``target``: what the web dynos should run now (None: the app or
    its web type is gone); ``now``: the manager's clock.
    """
    if preboot.phase is PrebootPhase.BOOTING:
        reason = _failure(preboot, new_states, target, now)
        if reason is not None:
            failing = preboot.move_to(PrebootPhase.FAILING, reason)
            return failing, [StopNew(preboot.new, reason)]
        if all(new_states.get(name) is DynoState.UP for name in preboot.new):
            return preboot.move_to(PrebootPhase.SWITCHED), [SwitchTraffic(preboot.new, preboot.old)]
        return preboot, []
    if preboot.phase is PrebootPhase.SWITCHED and old_left == 0:
        return preboot.move_to(PrebootPhase.DONE), [Finished(preboot.new)]
    if preboot.phase is PrebootPhase.FAILING and all(
        new_states.get(n) is None for n in preboot.new
    ):
        return preboot.move_to(PrebootPhase.FAILED), [RestoreOld(preboot.old, preboot.reason)]
    return preboot, []


def _failure(
    preboot: Preboot,
    new_states: Mapping[str, DynoState | None],
    target: Target | None,
    now: float,
) -> str | None:
    if target is None or target.quantity == 0:
        return "the web process type was removed or scaled to 0"
    if target != preboot.target:
        return f"superseded by a newer change (v{target.release_version})"
    for name in preboot.new:
        state = new_states.get(name)
        if state is None or state in _GONE:
            return f"{name} exited before passing its health checks"
    if now >= preboot.deadline:
        late = [n for n in preboot.new if new_states.get(n) is not DynoState.UP]
        return f"{', '.join(late)} did not pass its health checks in time"
    return None


# -- when a preboot begins --------------------------------------------------------------------


@dataclass(frozen=True)
class WebDynoView:
    """What the decision to preboot reads of a web dyno (not a retired one)."""

    name: str
    state: DynoState
    release_version: int
    size: str
    command: str
    stopping: bool
    restart_requested: bool


def should_preboot(
    target: Target | None, web: Sequence[WebDynoView], failed: Target | None
) -> bool:
    """Whether the app's web dynos are to be replaced by a preboot now.

    Yes when one serving (up) dyno runs something other than ``target`` (a new release,
    size or command) or was asked to restart, none is starting or stopping (a scale or a
    crash restart settles first), and this target has not failed a preboot already (a
    restart request tries again). Without a serving dyno there is nothing to keep serving:
    the ordinary replacement starts the new ones.
    """
    if target is None or target.quantity == 0 or not web:
        return False
    if any(d.stopping or d.state is DynoState.STARTING for d in web):
        return False
    serving = [d for d in web if d.state is DynoState.UP]
    restart = any(d.restart_requested for d in serving)
    outdated = any(
        (d.release_version, d.size, d.command)
        != (target.release_version, target.size, target.command)
        for d in serving
    )
    return bool(serving) and (restart or (outdated and target != failed))


def retired_name(name: str, release_version: int) -> str:
    """The name an old dyno serves under during a preboot: ``web.1`` of v5 is ``web.1.v5``,
    so that the new ``web.1`` can have its name."""
    return f"{name}.v{release_version}"
