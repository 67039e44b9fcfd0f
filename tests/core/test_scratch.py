"""When a dyno's scratch space is full, and what the platform says about it (pure)."""

from __future__ import annotations

from dynos.core.scratch import assess_scratch

MB = 1024 * 1024
CAP = 100 * MB


def test_a_scratch_with_room_says_nothing() -> None:
    verdict = assess_scratch(50 * MB, CAP, was_full=False)
    assert (verdict.full, verdict.line) == (False, None)


def test_a_full_scratch_is_said_once_with_its_size() -> None:
    first = assess_scratch(CAP, CAP, was_full=False)
    assert first.full
    assert first.line is not None
    assert first.line.startswith("Error: scratch space full (100M of 100M)")
    assert "ENOSPC" in first.line
    again = assess_scratch(CAP, CAP, was_full=True)
    assert (again.full, again.line) == (True, None)


def test_it_counts_as_full_again_only_once_a_tenth_was_freed() -> None:
    assert assess_scratch(95 * MB, CAP, was_full=True) == assess_scratch(CAP, CAP, True)
    freed = assess_scratch(85 * MB, CAP, was_full=True)
    assert (freed.full, freed.line) == (False, None)
    refilled = assess_scratch(CAP - MB // 2, CAP, was_full=False)
    assert refilled.full and refilled.line is not None


def test_no_cap_means_nothing_to_say() -> None:
    assert assess_scratch(0, 0, was_full=False).line is None
