"""The preboot state machine: pure, no sockets, no sleeps, a clock value passed in."""

from __future__ import annotations

import pytest

from dynos.core.preboot import (
    TRANSITIONS,
    Finished,
    IllegalPrebootMove,
    Preboot,
    PrebootPhase,
    RestoreOld,
    StopNew,
    SwitchTraffic,
    Target,
    WebDynoView,
    advance,
    retired_name,
    should_preboot,
)
from dynos.core.states import DynoState

UP, STARTING, CRASHED = DynoState.UP, DynoState.STARTING, DynoState.CRASHED
V6 = Target(6, "Standard-1X", "python3 web.py", 2)
NEW = ("web.1", "web.2")
OLD = ("web.1.v5", "web.2.v5")


def booting(deadline: float = 100.0) -> Preboot:
    return Preboot(V6, NEW, OLD, deadline)


def test_traffic_switches_only_once_every_new_dyno_is_up() -> None:
    preboot, steps = advance(booting(), {"web.1": UP, "web.2": STARTING}, 2, V6, now=10)
    assert (preboot.phase, steps) == (PrebootPhase.BOOTING, [])
    preboot, steps = advance(preboot, {"web.1": UP, "web.2": UP}, 2, V6, now=11)
    assert preboot.phase is PrebootPhase.SWITCHED
    assert steps == [SwitchTraffic(NEW, OLD)]


def test_switched_is_done_once_the_old_dynos_are_gone() -> None:
    switched = booting().move_to(PrebootPhase.SWITCHED)
    assert advance(switched, {"web.1": UP, "web.2": UP}, 1, V6, now=12) == (switched, [])
    done, steps = advance(switched, {"web.1": UP, "web.2": UP}, 0, V6, now=13)
    assert done.phase is PrebootPhase.DONE and done.finished
    assert steps == [Finished(NEW)]


def test_a_new_dyno_that_exits_fails_the_preboot_and_the_old_ones_serve_on() -> None:
    failing, steps = advance(booting(), {"web.1": UP, "web.2": CRASHED}, 2, V6, now=10)
    assert failing.phase is PrebootPhase.FAILING
    assert steps == [StopNew(NEW, "web.2 exited before passing its health checks")]
    # Still stopping: nothing to do yet.
    assert advance(failing, {"web.1": UP, "web.2": None}, 2, V6, now=11) == (failing, [])
    failed, steps = advance(failing, {"web.1": None, "web.2": None}, 2, V6, now=12)
    assert failed.phase is PrebootPhase.FAILED and failed.finished
    assert steps == [RestoreOld(OLD, failing.reason)]


def test_the_deadline_fails_it_naming_the_dynos_that_were_late() -> None:
    failing, steps = advance(booting(deadline=50), {"web.1": UP, "web.2": STARTING}, 2, V6, 50)
    assert failing.phase is PrebootPhase.FAILING
    assert steps == [StopNew(NEW, "web.2 did not pass its health checks in time")]


def test_a_newer_release_or_a_scale_to_zero_supersedes_it() -> None:
    v7 = Target(7, "Standard-1X", "python3 web.py", 2)
    failing, steps = advance(booting(), {"web.1": UP, "web.2": UP}, 2, v7, now=10)
    assert failing.phase is PrebootPhase.FAILING
    assert steps == [StopNew(NEW, "superseded by a newer change (v7)")]
    gone, _ = advance(booting(), {"web.1": UP, "web.2": UP}, 2, None, now=10)
    assert gone.phase is PrebootPhase.FAILING


def test_the_transition_table_refuses_a_skipped_phase() -> None:
    with pytest.raises(IllegalPrebootMove):
        booting().move_to(PrebootPhase.DONE)
    assert TRANSITIONS[PrebootPhase.DONE] == frozenset()
    assert TRANSITIONS[PrebootPhase.FAILED] == frozenset()


def web(name: str = "web.1", state: DynoState = UP, version: int = 5, **kw: object) -> WebDynoView:
    fields: dict[str, object] = {
        "size": "Standard-1X",
        "command": "python3 web.py",
        "stopping": False,
        "restart_requested": False,
        **kw,
    }
    return WebDynoView(name, state, version, **fields)  # type: ignore[arg-type]


def test_a_preboot_begins_when_a_serving_dyno_is_outdated() -> None:
    assert should_preboot(V6, [web(), web("web.2")], failed=None)
    assert not should_preboot(V6, [web(version=6), web("web.2", version=6)], failed=None)
    # A size or command change counts as a new target as well.
    assert should_preboot(V6, [web(version=6, size="Performance-M")], failed=None)


def test_no_preboot_while_a_dyno_starts_or_stops_or_nothing_serves() -> None:
    assert not should_preboot(V6, [web(), web("web.2", STARTING)], failed=None)
    assert not should_preboot(V6, [web(stopping=True)], failed=None)
    assert not should_preboot(V6, [web(state=CRASHED)], failed=None)
    assert not should_preboot(V6, [], failed=None)
    assert not should_preboot(None, [web()], failed=None)


def test_a_failed_target_is_not_tried_again_unless_a_restart_is_asked() -> None:
    assert not should_preboot(V6, [web()], failed=V6)
    assert should_preboot(V6, [web(restart_requested=True)], failed=V6)
    v7 = Target(7, "Standard-1X", "python3 web.py", 2)
    assert should_preboot(v7, [web()], failed=V6)


def test_a_restart_request_preboots_the_same_release() -> None:
    assert should_preboot(V6, [web(version=6, restart_requested=True)], failed=None)


def test_retired_names_carry_the_old_release() -> None:
    assert retired_name("web.1", 5) == "web.1.v5"
