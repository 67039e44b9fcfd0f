"""core/drain_queue.py: a bounded buffer, batches, retries with the same frame id, L10 counts;
a fake clock (``now`` in seconds and ``wall`` datetimes passed in)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from dynos.core.drain_queue import DeliveryRules, DrainQueue

T0 = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def wall(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queue(**rules: int | float) -> DrainQueue[str]:
    ids = (f"F{n}" for n in itertools.count(1))
    return DrainQueue(DeliveryRules(**rules), lambda: next(ids))  # type: ignore[arg-type]


def test_lines_go_in_batches_of_at_most_batch_size_in_order() -> None:
    q = queue(batch_size=3)
    assert q.due(0) is None and q.take(0, T0) is None
    for n in range(7):
        q.push(f"l{n}", T0)
    assert q.due(0) == 0
    sent = []
    while (batch := q.take(0, T0)) is not None:
        sent.append(batch.lines)
        assert q.take(0, T0) is batch  # one batch out at a time: the same until reported
        q.delivered(batch)
    # Full batches go at once; the last, partial one a linger after the one before.
    assert sent == [("l0", "l1", "l2"), ("l3", "l4", "l5")]
    assert q.due(0) == 0.05
    last = q.take(0.05, T0)
    assert last is not None and last.lines == ("l6",)
    q.delivered(last)
    assert q.delivered_total == 7 and len(q) == 0


def test_a_failed_batch_goes_again_with_the_same_frame_id_after_a_doubling_delay() -> None:
    q = queue(backoff=0.5, backoff_max=3, attempts=10)
    q.push("a", T0)
    batch = q.take(0, T0)
    assert batch is not None and batch.frame_id == "F1"
    delays = []
    now = 0.0
    for _ in range(5):
        delay = q.failed(batch, now, wall(now))
        assert delay is not None
        delays.append(delay)
        assert q.take(now + delay - 0.01, wall(now)) is None  # not yet
        assert q.due(now) == delay
        now += delay
        again = q.take(now, wall(now))
        assert again is not None
        assert (again.frame_id, again.lines) == ("F1", ("a",))
        batch = again
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    q.push("b", wall(now))  # new lines wait behind the batch out
    q.delivered(batch)
    following = q.take(now, wall(now))
    assert following is not None and (following.frame_id, following.lines) == ("F2", ("b",))


def test_overflow_drops_counts_and_says_it_once_in_an_l10_first_in_the_next_batch() -> None:
    q = queue(capacity=3, batch_size=10)
    assert all(q.push(f"l{n}", wall(n)) for n in range(3))
    assert not q.push("l3", wall(3)) and not q.push("l4", wall(4))
    assert len(q) == 3 and q.dropped_total == 2
    batch = q.take(10, wall(10))
    assert batch is not None and batch.lines == ("l0", "l1", "l2")
    assert batch.overflow is not None
    overflow = batch.overflow
    assert (overflow.dropped, overflow.since, overflow.at) == (2, wall(3), wall(10))
    assert batch.count == 4  # Logplex-Msg-Count counts the L10 line
    q.delivered(batch)
    q.push("l5", wall(11))
    after = q.take(11, wall(11))
    assert after is not None and after.overflow is None  # the count started again


def test_the_buffer_bound_counts_the_batch_out() -> None:
    q = queue(capacity=2, batch_size=1)
    q.push("a", T0)
    q.push("b", T0)
    batch = q.take(0, T0)  # "a" is out, "b" waits: two held
    assert batch is not None
    assert not q.push("c", T0)


def test_a_batch_given_up_counts_as_dropped_and_carries_its_l10_forward() -> None:
    q = queue(capacity=2, batch_size=5, attempts=2, backoff=1)
    q.push("a", wall(0))
    q.push("b", wall(0))
    q.push("c", wall(1))  # dropped: since 1 s
    batch = q.take(2, wall(2))
    assert batch is not None and batch.overflow is not None and batch.overflow.dropped == 1
    assert q.failed(batch, 2, wall(2)) == 1
    batch = q.take(3, wall(3))
    assert batch is not None
    assert q.failed(batch, 3, wall(3)) is None  # given up: its 2 lines and the 1 it told of
    assert len(q) == 0 and q.dropped_total == 3
    q.push("d", wall(4))
    following = q.take(4, wall(4))
    assert following is not None and following.overflow is not None
    assert (following.overflow.dropped, following.overflow.since) == (3, wall(1))
    assert following.lines == ("d",)


def test_only_drops_still_make_a_batch_for_the_l10_line() -> None:
    q = queue(capacity=1, batch_size=5, attempts=1)
    q.push("a", T0)
    batch = q.take(0, T0)
    assert batch is not None
    q.failed(batch, 0, T0)  # given up at once
    assert q.due(0.05) == 0
    only = q.take(0.05, T0)
    assert only is not None and only.lines == () and only.overflow is not None


def test_reports_on_a_stale_batch_change_nothing() -> None:
    q = queue()
    q.push("a", T0)
    batch = q.take(0, T0)
    assert batch is not None
    q.delivered(batch)
    assert q.failed(batch, 0, T0) is None
    q.delivered(batch)
    assert q.delivered_total == 1


def test_a_line_after_quiet_goes_at_once_and_steady_lines_in_batches_a_linger_apart() -> None:
    q = queue(batch_size=100, linger=0.1)
    q.push("first", T0)
    first = q.take(10.0, T0)  # idle before: no wait
    assert first is not None
    q.delivered(first)
    q.push("second", T0)
    assert q.due(10.02) == pytest.approx(0.08) and q.take(10.02, T0) is None
    for n in range(99):  # a full batch waits no linger
        q.push(f"l{n}", T0)
    assert q.due(10.03) == 0
    full = q.take(10.03, T0)
    assert full is not None and len(full.lines) == 100
