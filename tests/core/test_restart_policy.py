import pytest

from dynos.core.restart_policy import RestartPolicy, says_port_taken
from dynos.core.states import DynoState, check_transition

POLICY = RestartPolicy(base_delay=1.0, max_delay=8.0, stable_after=60.0)


@pytest.mark.parametrize(
    ("crashes", "delay"), [(1, 0.0), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]
)
def test_first_crash_restarts_at_once_then_delays_double_up_to_the_cap(
    crashes: int, delay: float
) -> None:
    assert POLICY.delay(crashes) == delay


def test_crash_count_grows_for_quick_crashes() -> None:
    assert POLICY.crash_count(previous=3, started_at=100.0, crashed_at=101.0) == 4


def test_crash_count_resets_after_a_stable_run() -> None:
    assert POLICY.crash_count(previous=7, started_at=100.0, crashed_at=160.0) == 1


def test_states_follow_the_transition_table() -> None:
    check_transition(DynoState.STARTING, DynoState.UP)
    check_transition(DynoState.UP, DynoState.CRASHED)
    check_transition(DynoState.CRASHED, DynoState.STARTING)
    with pytest.raises(ValueError, match="crashed to up"):
        check_transition(DynoState.CRASHED, DynoState.UP)


def test_a_dyno_whose_port_was_taken_restarts_at_once_a_few_times() -> None:
    policy = RestartPolicy(base_delay=1.0, max_delay=300.0)
    assert [policy.delay(n, port_taken=True) for n in (1, 2, 3, 4, 5)] == [0, 0, 0, 4, 8]
    assert [policy.delay(n) for n in (1, 2, 3)] == [0, 1, 2]


def test_what_apps_say_when_their_port_is_taken_is_recognised() -> None:
    said = [
        "OSError: [Errno 98] Address already in use",
        "[ERROR] Connection in use: ('0.0.0.0', 20417)",  # gunicorn's first line: no
        "[ERROR] Can't connect to ('0.0.0.0', 20417): [Errno 98] Address already in use",
        "Error: listen EADDRINUSE: address already in use :::20417",
        "listen tcp :20417: bind: address already in use",
    ]
    assert [says_port_taken(line) for line in said] == [True, False, True, True, True]
