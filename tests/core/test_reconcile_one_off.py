"""The planner and one-off dynos: outside the formation, stopped only with their app."""

from __future__ import annotations

from dynos.core.reconcile import DesiredApp, DesiredProcess, RunningDyno, StopDyno, plan_actions
from dynos.core.states import DynoState

APP = DesiredApp("a", 3, (DesiredProcess("web", 1, "Standard-1X", "python3 web.py"),))


def one_off(app_id: str = "a", release: int = 2) -> RunningDyno:
    return RunningDyno(
        app_id, "run", 4821, release, "Standard-1X", "bash", DynoState.UP, one_off=True
    )


def web() -> RunningDyno:
    return RunningDyno("a", "web", 1, 3, "Standard-1X", "python3 web.py", DynoState.UP)


def test_one_off_dyno_of_an_old_release_outside_the_formation_is_left_alone() -> None:
    assert plan_actions([APP], [web(), one_off()], now=0.0) == []


def test_one_off_dyno_is_stopped_when_its_app_is_gone() -> None:
    assert plan_actions([], [one_off()], now=0.0) == [StopDyno("a", "run.4821", "scale")]
