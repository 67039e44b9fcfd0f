"""The idling rule: when a lone small web dyno sleeps, and when a sleeping app wakes. Pure: the
fake clock gives the times, nothing sleeps."""

from __future__ import annotations

from dataclasses import dataclass

from dynos.core.idling import IdleAction, idle_action, idle_due, may_idle
from dynos.core.sizes import find_size
from dynos.core.states import DynoState
from dynos.testing.fakes import FakeClock

ECO = find_size("eco")
ONE_X = find_size("1X")
TWO_X = find_size("2X")
HOUR = 3600.0


@dataclass(frozen=True)
class Web:
    state: DynoState
    started_at: float
    stopping: bool = False


def test_only_a_lone_web_dyno_of_an_idling_size_may_idle() -> None:
    assert may_idle(1, ECO) and may_idle(1, ONE_X)
    assert not may_idle(2, ONE_X)
    assert not may_idle(1, TWO_X)
    assert not may_idle(0, ONE_X)


def test_idle_is_due_after_the_quiet_spell_and_never_when_it_is_zero() -> None:
    assert not idle_due(0.0, HOUR - 1, HOUR)
    assert idle_due(0.0, HOUR, HOUR)
    assert not idle_due(0.0, 10 * HOUR, 0.0)


def test_a_quiet_lone_dyno_sleeps_once_the_spell_since_boot_or_last_request_is_over() -> None:
    clock = FakeClock()
    dyno = Web(DynoState.UP, started_at=clock())
    clock.advance(HOUR - 1)
    assert idle_action((1, ONE_X), [dyno], None, clock(), HOUR) is IdleAction.NONE
    clock.advance(1)
    assert idle_action((1, ONE_X), [dyno], None, clock(), HOUR) is IdleAction.SLEEP
    last_request = clock() - 10  # a request 10 s ago restarts the spell
    assert idle_action((1, ONE_X), [dyno], last_request, clock(), HOUR) is IdleAction.NONE
    clock.advance(HOUR - 10)
    assert idle_action((1, ONE_X), [dyno], last_request, clock(), HOUR) is IdleAction.SLEEP


def test_no_sleep_unless_the_lone_dyno_is_up_and_not_stopping() -> None:
    clock = FakeClock()
    later = clock() + 2 * HOUR
    for dyno in (
        Web(DynoState.STARTING, clock()),
        Web(DynoState.CRASHED, clock()),
        Web(DynoState.UP, clock(), stopping=True),
        Web(DynoState.IDLE, clock()),
    ):
        assert idle_action((1, ONE_X), [dyno], None, later, HOUR) is IdleAction.NONE, dyno
    two = [Web(DynoState.UP, clock()), Web(DynoState.UP, clock())]
    assert idle_action((1, ONE_X), two, None, later, HOUR) is IdleAction.NONE
    assert idle_action((1, ONE_X), [], None, later, HOUR) is IdleAction.NONE


def test_a_sleeping_app_that_may_no_longer_idle_wakes() -> None:
    asleep = [Web(DynoState.IDLE, 0.0)]
    assert idle_action((2, ONE_X), asleep, None, 1.0, HOUR) is IdleAction.WAKE  # scaled out
    assert idle_action((1, TWO_X), asleep, None, 1.0, HOUR) is IdleAction.WAKE  # scaled up
    assert idle_action(None, asleep, None, 1.0, HOUR) is IdleAction.WAKE  # no web type left
    assert idle_action((1, ONE_X), asleep, None, 1.0, HOUR) is IdleAction.NONE  # still asleep
    awake = [Web(DynoState.UP, 0.0)]
    assert idle_action((2, ONE_X), awake, None, 10 * HOUR, HOUR) is IdleAction.NONE


def test_an_idle_after_of_zero_never_sleeps() -> None:
    dyno = Web(DynoState.UP, 0.0)
    assert idle_action((1, ONE_X), [dyno], None, 100 * HOUR, 0.0) is IdleAction.NONE
