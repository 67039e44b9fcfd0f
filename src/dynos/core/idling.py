"""The seed's idling rule: a lone web dyno of a size that may idle sleeps after a quiet spell.

Two or more web dynos, or a larger size, never idle; workers never idle. An app that sleeps
and is scaled out or up (so that it may no longer idle) is woken.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from dynos.core.sizes import DynoSize
from dynos.core.states import DynoState


class IdleAction(StrEnum):
    NONE = "none"
    SLEEP = "sleep"  # put the app's lone web dyno to sleep
    WAKE = "wake"  # start the app's idle web dynos again


class WebDyno(Protocol):
    """What the idling rule reads of a web dyno (the manager's ``DynoRecord`` is one)."""

    @property
    def state(self) -> DynoState: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def started_at(self) -> float: ...


def may_idle(web_quantity: int, size: DynoSize) -> bool:
    """Whether an app whose web formation is ``web_quantity`` dynos of ``size`` may idle."""
    return web_quantity == 1 and size.may_idle


def idle_due(last_activity: float, now: float, idle_after: float) -> bool:
    """Whether ``idle_after`` seconds (0: never) passed since the last request or boot."""
    return idle_after > 0 and now - last_activity >= idle_after


def idle_action(
    web_formation: tuple[int, DynoSize] | None,
    web: Sequence[WebDyno],
    last_request_at: float | None,
    now: float,
    idle_after: float,
) -> IdleAction:
    """What to do about one app's sleep: ``web_formation`` is its web (quantity, size), None
    when it has no web process type; ``web`` its web dynos; ``last_request_at`` when the
    router last saw a request for it (None: never)."""
    if web_formation is None or not may_idle(*web_formation):
        if any(d.state is DynoState.IDLE for d in web):
            return IdleAction.WAKE
        return IdleAction.NONE
    if len(web) != 1 or web[0].state is not DynoState.UP or web[0].stopping:
        return IdleAction.NONE
    last = max(web[0].started_at, last_request_at or 0.0)
    return IdleAction.SLEEP if idle_due(last, now, idle_after) else IdleAction.NONE
