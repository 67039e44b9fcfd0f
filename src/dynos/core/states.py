"""Dyno states, in Heroku's words, and every transition between them.

All transitions live in this table; the manager asks :func:`check_transition` before it
changes a dyno's state, so an impossible move (``crashed`` -> ``up``) is a bug caught early.
"""

from __future__ import annotations

from enum import StrEnum


class DynoState(StrEnum):
    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    IDLE = "idle"
    DOWN = "down"  # stopping, or stopped: its process is being or has been terminated
    COMPLETE = "complete"  # a one-off dyno whose process exited: it is never started again


TRANSITIONS: dict[DynoState, frozenset[DynoState]] = {
    # booting: a web dyno is up once it accepts connections on $PORT, a worker once started
    DynoState.STARTING: frozenset(
        {DynoState.UP, DynoState.CRASHED, DynoState.DOWN, DynoState.COMPLETE}
    ),
    DynoState.UP: frozenset(
        {DynoState.CRASHED, DynoState.DOWN, DynoState.IDLE, DynoState.COMPLETE}
    ),
    # a crashed dyno is started again by the restart policy, or removed by a scale down
    DynoState.CRASHED: frozenset({DynoState.STARTING, DynoState.DOWN}),
    DynoState.IDLE: frozenset({DynoState.STARTING, DynoState.DOWN}),
    DynoState.DOWN: frozenset({DynoState.STARTING}),
    DynoState.COMPLETE: frozenset(),
}


def check_transition(old: DynoState, new: DynoState) -> None:
    """Raise ValueError if a dyno may not go from ``old`` to ``new``."""
    if new not in TRANSITIONS[old]:
        raise ValueError(f"a dyno cannot go from {old} to {new}")
