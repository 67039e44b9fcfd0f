from dataclasses import replace

from dynos.core.reconcile import (
    DesiredApp,
    DesiredProcess,
    RunningDyno,
    StartDyno,
    StopDyno,
    next_deadline,
    plan_actions,
)
from dynos.core.states import DynoState

WEB = DesiredProcess("web", 2, "Standard-1X", "python3 web.py")
WORKER = DesiredProcess("worker", 1, "Standard-1X", "python3 worker.py")
APP = DesiredApp("a1", 3, (WEB, WORKER))


def running(type_: str, number: int, **changes: object) -> RunningDyno:
    process = WEB if type_ == "web" else WORKER
    dyno = RunningDyno("a1", type_, number, 3, process.size, process.command, DynoState.UP)
    return replace(dyno, **changes)  # type: ignore[arg-type]


def test_plan_starts_every_missing_dyno_lowest_number_first() -> None:
    actions = plan_actions([APP], [running("web", 2)], now=0)
    assert actions == [
        StartDyno("a1", "web", 1, 3, "Standard-1X", "python3 web.py"),
        StartDyno("a1", "worker", 1, 3, "Standard-1X", "python3 worker.py"),
    ]


def test_plan_does_nothing_when_actual_matches_desired() -> None:
    actual = [running("web", 1), running("web", 2), running("worker", 1)]
    assert plan_actions([APP], actual, now=0) == []


def test_scale_down_stops_highest_numbered_dyno_first() -> None:
    app = replace(APP, processes=(replace(WEB, quantity=1), WORKER))
    actual = [running("web", n) for n in (1, 2, 3, 10)] + [running("worker", 1)]
    actions = plan_actions([app], actual, now=0)
    assert [a.name for a in actions] == ["web.10", "web.3", "web.2"]
    assert all(isinstance(a, StopDyno) and a.reason == "scale" for a in actions)


def test_new_release_replaces_dynos_of_the_old_one_rolling() -> None:
    actual = [running("web", 1, release_version=2), running("web", 2), running("worker", 1)]
    assert plan_actions([APP], actual, now=0) == [StopDyno("a1", "web.1", "restart")]


def test_size_change_replaces_dynos_one_at_a_time() -> None:
    app = replace(APP, processes=(replace(WEB, size="Standard-2X"), WORKER))
    actual = [running("web", 1), running("web", 2), running("worker", 1)]
    assert plan_actions([app], actual, now=0) == [StopDyno("a1", "web.1", "restart")]


def test_replacement_waits_while_a_sibling_is_starting_or_stopping() -> None:
    for sibling in (
        running("web", 1, state=DynoState.STARTING),
        running("web", 1, stopping=True),
    ):
        actual = [sibling, running("web", 2, release_version=2), running("worker", 1)]
        assert plan_actions([APP], actual, now=0) == []


def test_a_dyno_down_for_its_replacement_is_started_and_holds_back_its_siblings() -> None:
    # Stopped for a restart, its process gone: the manager keeps its name, down, until this.
    actual = [
        running("web", 1, state=DynoState.DOWN, release_version=2),
        running("web", 2, release_version=2),
        running("worker", 1),
    ]
    assert plan_actions([APP], actual, now=0) == [
        StartDyno("a1", "web", 1, 3, "Standard-1X", "python3 web.py")
    ]


def test_a_dyno_down_for_its_replacement_and_scaled_away_is_stopped() -> None:
    app = replace(APP, processes=(replace(WEB, quantity=1), WORKER))
    actual = [running("web", 1), running("web", 2, state=DynoState.DOWN), running("worker", 1)]
    assert plan_actions([app], actual, now=0) == [StopDyno("a1", "web.2", "scale")]


def test_replacement_waits_while_a_sibling_is_missing() -> None:
    actual = [running("web", 2, release_version=2), running("worker", 1)]
    actions = plan_actions([APP], actual, now=0)
    assert actions == [StartDyno("a1", "web", 1, 3, "Standard-1X", "python3 web.py")]


def test_crashed_dynos_are_replaced_without_waiting() -> None:
    actual = [
        running("web", 1, release_version=2, state=DynoState.CRASHED),
        running("web", 2, release_version=2),
        running("worker", 1),
    ]
    assert plan_actions([APP], actual, now=0) == [
        StopDyno("a1", "web.2", "restart"),
        StopDyno("a1", "web.1", "restart"),
    ]


def test_idle_dyno_sleeps_through_a_new_release() -> None:
    app = replace(APP, processes=(replace(WEB, quantity=1),))
    actual = [running("web", 1, release_version=2, state=DynoState.IDLE)]
    assert plan_actions([app], actual, now=0) == []


def test_idle_dyno_scaled_away_is_stopped() -> None:
    app = replace(APP, processes=(replace(WEB, quantity=0),))
    actual = [running("web", 1, state=DynoState.IDLE)]
    assert plan_actions([app], actual, now=0) == [StopDyno("a1", "web.1", "scale")]


def test_restart_request_replaces_the_dyno() -> None:
    actual = [running("web", 1), running("web", 2), running("worker", 1, restart_requested=True)]
    assert plan_actions([APP], actual, now=0) == [StopDyno("a1", "worker.1", "restart")]


def test_stopping_dynos_are_left_alone_and_not_started_twice() -> None:
    actual = [running("web", 1, release_version=1, stopping=True), running("web", 2)]
    actions = plan_actions([APP], actual, now=0)
    assert actions == [StartDyno("a1", "worker", 1, 3, "Standard-1X", "python3 worker.py")]


def test_crashed_dyno_restarts_only_once_its_backoff_is_over() -> None:
    crashed = running("worker", 1, state=DynoState.CRASHED, restart_at=10.0)
    actual = [running("web", 1), running("web", 2), crashed]
    assert plan_actions([APP], actual, now=9.9) == []
    assert plan_actions([APP], actual, now=10.0) == [
        StartDyno("a1", "worker", 1, 3, "Standard-1X", "python3 worker.py")
    ]
    assert next_deadline(actual) == 10.0


def test_dynos_of_a_destroyed_app_are_stopped() -> None:
    actions = plan_actions([], [running("web", 1)], now=0)
    assert actions == [StopDyno("a1", "web.1", "scale")]


def test_process_type_gone_from_release_is_stopped() -> None:
    app = replace(APP, processes=(WEB,))
    actual = [running("web", 1), running("web", 2), running("worker", 1)]
    assert plan_actions([app], actual, now=0) == [StopDyno("a1", "worker.1", "scale")]


def test_a_preboot_app_s_serving_outdated_web_dynos_are_left_to_the_preboot() -> None:
    actual = [running("web", 1, release_version=2), running("web", 2, release_version=2)]
    actual.append(running("worker", 1, release_version=2))
    actions = plan_actions([APP], actual, now=0, preboot={("a1", "web")})
    # The worker rolls as always; the web dynos are the preboot's to replace.
    assert actions == [StopDyno("a1", "worker.1", "restart")]
    crashed = [running("web", 1, release_version=2, state=DynoState.CRASHED), running("web", 2)]
    crashed.append(running("worker", 1))
    assert plan_actions([APP], crashed, now=0, preboot={("a1", "web")}) == [
        StopDyno("a1", "web.1", "restart")
    ]


def test_a_held_type_is_neither_started_stopped_nor_replaced() -> None:
    actual = [running("web", 1, release_version=2), running("web", 5), running("worker", 1)]
    assert plan_actions([APP], actual, now=0, held={("a1", "web")}) == []
    assert plan_actions([APP], [running("worker", 1)], now=0, held={("a1", "web")}) == []
