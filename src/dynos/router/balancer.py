"""Which dyno gets a request: least outstanding requests between two random choices.

Heroku's router picks a dyno at random, so a request can queue behind a slow one while
another dyno is free. Picking the less busy of two dynos drawn at random ("the power of two
choices") avoids that almost as well as looking at every dyno, without the herd effect of
all routers sending to the one least-loaded dyno, and costs two lookups whatever the count.

A dyno in quarantine (a connect to it was just refused or timed out) is passed over while
another can be had; a dyno already tried for this request is never picked again.
Pure: the caller passes the clock reading and the source of randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from dynos.router.dyno_slot import DynoSlot

QUARANTINE = 3.0  # seconds a dyno is passed over after a refused or timed-out connect


def pick_dyno(
    slots: Sequence[DynoSlot],
    now: float,
    random: Callable[[], float],
    tried: Collection[DynoSlot] = (),
) -> DynoSlot | None:
    """The dyno for the next attempt at a request, or None when every one was tried.

    ``random()`` returns a float in [0, 1). Quarantined dynos are picked only when all the
    untried ones are quarantined (better a likely failure than a certain one).
    """
    if not tried:
        count = len(slots)
        if count == 1:
            return slots[0]
        if count == 0:
            return None
        first, second = _two(slots, count, random)
        first_ok = first.quarantined_until <= now
        second_ok = second.quarantined_until <= now
        if first_ok and second_ok:
            return _less_busy(first, second, random)
        if first_ok or second_ok:
            return first if first_ok else second
        # both quarantined: look at all of them below
    untried = [slot for slot in slots if slot not in tried]
    if not untried:
        return None
    healthy = [slot for slot in untried if slot.quarantined_until <= now] or untried
    if len(healthy) == 1:
        return healthy[0]
    return _less_busy(*_two(healthy, len(healthy), random), random)


def _two(
    slots: Sequence[DynoSlot], count: int, random: Callable[[], float]
) -> tuple[DynoSlot, DynoSlot]:
    """Two different slots drawn at random (``count`` >= 2)."""
    if count == 2:
        return slots[0], slots[1]
    i = int(random() * count)
    j = int(random() * (count - 1))
    if j >= i:
        j += 1
    return slots[i], slots[j]


def _less_busy(first: DynoSlot, second: DynoSlot, random: Callable[[], float]) -> DynoSlot:
    if first.in_flight != second.in_flight:
        return first if first.in_flight < second.in_flight else second
    return first if random() < 0.5 else second
