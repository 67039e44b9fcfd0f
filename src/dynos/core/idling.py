"""The seed's idling rule: a lone web dyno of a size that may idle sleeps after a quiet spell.

Two or more web dynos, or a larger size, never idle; workers never idle.
"""

from __future__ import annotations

from dynos.core.sizes import DynoSize


def may_idle(web_quantity: int, size: DynoSize) -> bool:
    """Whether an app whose web formation is ``web_quantity`` dynos of ``size`` may idle."""
    return web_quantity == 1 and size.may_idle


def idle_due(last_activity: float, now: float, idle_after: float) -> bool:
    """Whether ``idle_after`` seconds (0: never) passed since the last request or boot."""
    return idle_after > 0 and now - last_activity >= idle_after
