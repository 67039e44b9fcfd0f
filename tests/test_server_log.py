"""The server's log: a repeated warning or error is shown once per window, then counted."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from dynos.server_log import RepeatedRecords, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_of_a_kind_is_shown_and_the_repeats_counted() -> None:
    records = RepeatedRecords(window=60)
    assert records.seen("k", "first", 0.0) == (True, None)
    assert records.seen("k", "again", 1.0) == (False, None)
    assert records.seen("k", "again", 59.0) == (False, None)
    show, summary = records.seen("k", "later", 60.0)
    assert show
    assert summary is not None
    assert (summary.first, summary.repeats, summary.seconds) == ("first", 2, 60.0)
    assert "repeated 2 more times in the last 60 s, not shown: first" in summary.message()


def test_kinds_are_counted_apart_and_a_window_without_repeats_says_nothing() -> None:
    records = RepeatedRecords(window=10)
    assert records.seen("a", "a", 0.0) == (True, None)
    assert records.seen("b", "b", 1.0) == (True, None)
    assert records.seen("a", "a", 2.0) == (False, None)
    assert [s.first for s in records.ended(10.5)] == ["a"]  # b's window is still open
    assert records.ended(11.0) == []  # b had no repeats
    assert records.seen("a", "a", 12.0) == (True, None)


def test_every_window_is_summed_up_at_exit() -> None:
    records = RepeatedRecords(window=60)
    records.seen("a", "a", 0.0)
    records.seen("a", "a", 1.0)
    [summary] = records.ended(2.0, every=True)
    assert summary.message() == "(repeated once more in the last 2 s, not shown: a)"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, RepeatFilter, Clock]]:
    """A real logger whose handler writes to a buffer through the filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    clock = Clock()
    repeats = RepeatFilter(handler, window=60, clock=clock)
    handler.addFilter(repeats)
    logger = logging.getLogger("tests.server_log")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, out, repeats, clock
    logger.removeHandler(handler)
    logger.propagate = True


def fail_at_one_place() -> None:
    raise TypeError("Exchange object expected; got None")


def test_a_repeated_traceback_is_written_once_then_counted(
    logged: tuple[logging.Logger, io.StringIO, RepeatFilter, Clock],
) -> None:
    logger, out, repeats, clock = logged
    for n in range(1000):
        try:
            fail_at_one_place()
        except TypeError:
            logger.exception("router: error while handling request %d", n)
        clock.now += 0.01
    assert out.getvalue().count("Traceback") == 1
    assert "request 0\n" in out.getvalue()
    clock.now += 60
    repeats.flush()
    last = out.getvalue().splitlines()[-1]
    assert last == (
        "ERROR (repeated 999 more times in the last 60 s, not shown: "
        "router: error while handling request 0)"
    )


def test_the_same_message_from_another_place_or_info_lines_are_not_held_back(
    logged: tuple[logging.Logger, io.StringIO, RepeatFilter, Clock],
) -> None:
    logger, out, _, _ = logged
    for _ in range(3):
        logger.info("dyno web.1 started")
    try:
        fail_at_one_place()
    except TypeError:
        logger.exception("failed")
    try:
        raise ValueError("elsewhere")
    except ValueError:
        logger.exception("failed")
    logger.warning("refused %s", "10.0.0.1")
    logger.warning("refused %s", "10.0.0.2")  # the same template: counted
    text = out.getvalue()
    assert text.count("dyno web.1 started") == 3
    assert text.count("Traceback") == 2
    assert "10.0.0.1" in text
    assert "10.0.0.2" not in text
