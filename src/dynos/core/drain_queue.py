"""A drain's delivery rules: a bounded buffer, batches, retries with back-off, and overflow.

Lines come in with :meth:`DrainQueue.push` (from the log hub: it never waits) and go out in
batches that the drain's sender takes with :meth:`DrainQueue.take` and reports on with
:meth:`DrainQueue.delivered` or :meth:`DrainQueue.failed`. One batch is out at a time.

- **Bounded:** the lines held (waiting and in the batch out) never exceed ``capacity``; a line
  that finds the buffer full is dropped and counted, the time of the first noted.
- **Overflow:** the next batch formed after drops carries an :class:`Overflow`, which the
  sender puts first as Heroku's ``L10`` line ("N messages dropped since T"); the count starts
  again from zero.
- **Batches:** a new batch is taken at once when a full one waits, or the drain was idle;
  otherwise ``linger`` after the last one was taken, so that lines arriving steadily go in
  batches (one POST per ``linger``, not one per line: each costs the server CPU).
- **Retries:** a failed batch goes again, the same batch with the same frame id, after a delay
  that doubles from ``backoff`` up to ``backoff_max``; after ``attempts`` failures it is given
  up and its lines count as dropped (said by the next L10 line).

Pure: the clock is the ``now`` (seconds, monotonic) and ``wall`` (a datetime) passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, TypeVar

from dynos.core.drain_frames import Overflow

T = TypeVar("T")


@dataclass(frozen=True)
class DeliveryRules:
    capacity: int = 10_000  # lines held per drain
    batch_size: int = 500  # lines per POST (a syslog drain writes a batch at once too)
    backoff: float = 0.5  # seconds before the first retry
    backoff_max: float = 30.0
    attempts: int = 8  # sends of one batch before it is given up (about 2 minutes)
    timeout: float = 10.0  # seconds one send may take (the shell's deadline)
    linger: float = 0.05  # seconds between new batches, unless a full one waits

    def delay(self, failures: int) -> float:
        """Seconds before the next send of a batch that failed ``failures`` times."""
        return float(min(self.backoff * 2 ** (failures - 1), self.backoff_max))


@dataclass(frozen=True)
class Batch(Generic[T]):
    frame_id: str
    lines: tuple[T, ...]
    overflow: Overflow | None
    failures: int = 0  # sends of it that failed so far

    @property
    def count(self) -> int:
        """Messages in it (Logplex-Msg-Count): its lines, and the L10 line if any."""
        return len(self.lines) + (self.overflow is not None)


class DrainQueue(Generic[T]):
    def __init__(self, rules: DeliveryRules, new_id: Callable[[], str]) -> None:
        self.rules = rules
        self._new_id = new_id
        self._waiting: deque[T] = deque()
        self._out: Batch[T] | None = None
        self._retry_at = 0.0
        self._last_taken: float | None = None  # when the last new batch was taken
        self._dropped = 0
        self._dropped_since: datetime | None = None
        self.dropped_total = 0  # for the server's own accounting
        self.delivered_total = 0

    def __len__(self) -> int:
        """Lines held: waiting and in the batch out."""
        return len(self._waiting) + (len(self._out.lines) if self._out else 0)

    def push(self, line: T, wall: datetime) -> bool:
        """Hold ``line``; False when the buffer is full and it was dropped."""
        if len(self) >= self.rules.capacity:
            self._drop(1, wall)
            self.dropped_total += 1
            return False
        self._waiting.append(line)
        return True

    def _drop(self, count: int, since: datetime) -> None:
        """Count ``count`` more lines dropped, the first of them at ``since`` or later."""
        if self._dropped_since is None or since < self._dropped_since:
            self._dropped_since = since
        self._dropped += count

    @property
    def waiting(self) -> int:
        """Lines waiting for a batch (not counting the batch out)."""
        return len(self._waiting)

    def due(self, now: float) -> float | None:
        """Seconds until a batch can be taken (0: now), None while there is nothing to send."""
        if self._out is not None:
            return max(0.0, self._retry_at - now)
        if not self._waiting and not self._dropped:
            return None
        if len(self._waiting) >= self.rules.batch_size or self._last_taken is None:
            return 0.0
        return max(0.0, self._last_taken + self.rules.linger - now)

    def take(self, now: float, wall: datetime) -> Batch[T] | None:
        """The batch to send now: the one out again when its retry is due, else a new one
        from the waiting lines (the L10 notice first after drops); None when none is due."""
        if self._out is not None:
            return self._out if now >= self._retry_at else None
        if self.due(now) != 0.0:
            return None
        size = min(len(self._waiting), self.rules.batch_size)
        lines = tuple(self._waiting.popleft() for _ in range(size))
        overflow = None
        if self._dropped:
            assert self._dropped_since is not None
            overflow = Overflow(self._dropped, self._dropped_since, wall)
            self._dropped, self._dropped_since = 0, None
        self._out = Batch(self._new_id(), lines, overflow)
        self._last_taken = now
        return self._out

    def delivered(self, batch: Batch[T]) -> None:
        if batch is self._out or (self._out and batch.frame_id == self._out.frame_id):
            self.delivered_total += len(batch.lines)
            self._out = None

    def failed(self, batch: Batch[T], now: float, wall: datetime) -> float | None:
        """Note a failed send; the seconds until it goes again, or None: it was given up."""
        if self._out is None or batch.frame_id != self._out.frame_id:
            return None
        failures = self._out.failures + 1
        if failures >= self.rules.attempts:
            self._out = None
            # The L10 notice it carried is lost with it: its count is said again.
            self.dropped_total += len(batch.lines)
            self._drop(len(batch.lines), wall)
            if batch.overflow is not None:
                self._drop(batch.overflow.dropped, batch.overflow.since)
            return None
        self._out = replace(self._out, failures=failures)
        delay = self.rules.delay(failures)
        self._retry_at = now + delay
        return delay
