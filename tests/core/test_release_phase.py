"""The release phase's rules: its states, when it runs, how it ends, its output lines."""

from __future__ import annotations

import pytest

from dynos.core.release_phase import (
    TRANSITIONS,
    LineSplitter,
    PhaseEnd,
    PhaseOutcome,
    ReleaseStatus,
    Trigger,
    check_status_change,
    describe_seconds,
    failure_message,
    formation_types,
    initial_status,
    runs_release_phase,
)

WITH_PHASE = {"web": "python3 web.py", "release": "python3 manage.py migrate"}
WITHOUT = {"web": "python3 web.py"}


def test_a_pending_release_ends_once_succeeded_or_failed() -> None:
    check_status_change(ReleaseStatus.PENDING, ReleaseStatus.SUCCEEDED)
    check_status_change(ReleaseStatus.PENDING, ReleaseStatus.FAILED)
    for old in (ReleaseStatus.SUCCEEDED, ReleaseStatus.FAILED):
        for new in ReleaseStatus:
            with pytest.raises(ValueError, match=f"from {old} to {new}"):
                check_status_change(old, new)
    with pytest.raises(ValueError):
        check_status_change(ReleaseStatus.PENDING, ReleaseStatus.PENDING)
    assert set(TRANSITIONS) == set(ReleaseStatus)


@pytest.mark.parametrize(
    "trigger", [Trigger.DEPLOY, Trigger.CONFIG, Trigger.ROLLBACK, Trigger.ADDON_ATTACH]
)
def test_every_new_release_of_code_with_a_release_type_runs_it(trigger: Trigger) -> None:
    assert runs_release_phase(WITH_PHASE, "slug", trigger)
    assert initial_status(WITH_PHASE, "slug", trigger) is ReleaseStatus.PENDING


@pytest.mark.parametrize("trigger", [Trigger.ADDON_DETACH, Trigger.ADDON_MOVED])
def test_an_add_ons_detach_or_move_skips_it(trigger: Trigger) -> None:
    """A detach, as on Heroku; a move (the platform's: the dynos must not wait on the app's
    command for a server that moved)."""
    assert not runs_release_phase(WITH_PHASE, "slug", trigger)
    assert initial_status(WITH_PHASE, "slug", trigger) is ReleaseStatus.SUCCEEDED


def test_without_a_release_type_or_code_there_is_nothing_to_run() -> None:
    assert initial_status(WITHOUT, "slug", Trigger.DEPLOY) is ReleaseStatus.SUCCEEDED
    assert initial_status(WITH_PHASE, None, Trigger.CONFIG) is ReleaseStatus.SUCCEEDED


def test_release_is_never_a_formation_type() -> None:
    assert formation_types({"release": "x", "web": "y", "worker": "z"}) == ["web", "worker"]


def test_only_a_zero_exit_succeeds() -> None:
    assert PhaseOutcome(PhaseEnd.EXITED, 0).status is ReleaseStatus.SUCCEEDED
    for outcome in (
        PhaseOutcome(PhaseEnd.EXITED, 1),
        PhaseOutcome(PhaseEnd.EXITED, 137),
        PhaseOutcome(PhaseEnd.TIMED_OUT, 0),  # stopped past the deadline, whatever it said
        PhaseOutcome(PhaseEnd.INTERRUPTED),
        PhaseOutcome(PhaseEnd.ERROR),
    ):
        assert outcome.status is ReleaseStatus.FAILED, outcome


def test_the_reason_says_how_it_ended() -> None:
    assert PhaseOutcome(PhaseEnd.EXITED, 2).reason(60) == "Release command exited with status 2."
    assert PhaseOutcome(PhaseEnd.EXITED, 137).reason(60) == (
        "Release command was killed by signal 9 (status 137)."
    )
    assert PhaseOutcome(PhaseEnd.TIMED_OUT, 143).reason(3600) == (
        "Release command timed out after 1 hour (the server's --release-timeout) and was stopped."
    )
    assert "server stopped" in PhaseOutcome(PhaseEnd.INTERRUPTED).reason(60)
    assert "server's log" in PhaseOutcome(PhaseEnd.ERROR).reason(60)


def test_the_failure_message_says_what_serves_and_what_to_do() -> None:
    message = failure_message("shop", 7, 6, "Release command exited with status 1.")
    assert message == (
        "Release v7 failed: Release command exited with status 1. Its dynos were not started "
        "and v6 keeps serving. See the output with 'dynos releases:output v7 -a shop', fix the "
        "release command and deploy again."
    )
    assert "nothing was released" in failure_message("shop", 2, None, "x")


def test_durations_read_as_people_say_them() -> None:
    assert describe_seconds(3600) == "1 hour"
    assert describe_seconds(7200) == "2 hours"
    assert describe_seconds(900) == "15 minutes"
    assert describe_seconds(90) == "90 seconds"
    assert describe_seconds(2.5) == "2.5 seconds"


def test_output_bytes_become_lines_whatever_the_chunks() -> None:
    lines = LineSplitter()
    assert lines.feed(b"one\ntw") == ["one"]
    assert lines.feed(b"o\r\nthree\n\n") == ["two", "three", ""]
    assert lines.feed(b"caf\xc3") == []
    assert lines.feed(b"\xa9 \xff") == []
    assert lines.flush() == ["café \ufffd"]
    assert lines.flush() == []


def test_a_line_without_end_comes_out_in_pieces() -> None:
    lines = LineSplitter(limit=4)
    assert lines.feed(b"abcdefghij") == ["abcd", "efgh"]
    assert lines.feed(b"k\nlmnopq\n") == ["ijk", "lmno", "pq"]
    assert lines.flush() == []
