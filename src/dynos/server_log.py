"""The server's own log (its stderr): the format, and repeated errors shown once per window.

A client can make the server log the same warning or error over and over (a connection
refused past a cap, or a bug met by every request of some shape: 25,000 requests once wrote
10.7 MB of the same traceback, issue 11). So a warning or error is shown the first time;
the same one again within ``WINDOW`` seconds is counted instead, and when the window ends one
line says how many there were. "The same": the same logger, level and message template (not
its arguments, which carry addresses and ids) and, for an exception, the same type raised at
the same place. Informational lines are never held back.

``RepeatedRecords`` decides (pure, given the time); ``RepeatFilter`` applies it to the log
handler; the server calls ``flush`` every few seconds so that a count is not held back until
the next occurrence, and at exit.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import cast

WINDOW = 60.0  # seconds during which a repeated warning or error is counted, not shown
FLUSH_EVERY = 5.0  # how often the server writes the counts of windows that ended


@dataclass
class _Window:
    opened: float
    first: str  # the message shown when the window opened
    repeats: int = 0


@dataclass(frozen=True)
class Summary:
    """``repeats`` more of the record of ``key`` shown as ``first``, in ``seconds``."""

    key: Hashable
    first: str
    repeats: int
    seconds: float

    def message(self) -> str:
        times = "once more" if self.repeats == 1 else f"{self.repeats} more times"
        return f"(repeated {times} in the last {self.seconds:.0f} s, not shown: {self.first})"


class RepeatedRecords:
    """Which records to show: the first of a kind per ``window`` seconds, then a count."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._open: dict[Hashable, _Window] = {}

    def seen(self, key: Hashable, message: str, now: float) -> tuple[bool, Summary | None]:
        """Whether to show this record, and the summary of the window it ends, if any."""
        window = self._open.get(key)
        if window is not None and now - window.opened < self.window:
            window.repeats += 1
            return False, None
        self._open[key] = _Window(now, message)
        return True, self._summary(key, window, now)

    def ended(self, now: float, *, every: bool = False) -> list[Summary]:
        """The summaries of the windows that have ended by ``now`` (``every``: of all)."""
        summaries = []
        for key, window in list(self._open.items()):
            if every or now - window.opened >= self.window:
                del self._open[key]
                summary = self._summary(key, window, now)
                if summary is not None:
                    summaries.append(summary)
        return summaries

    def _summary(self, key: Hashable, window: _Window | None, now: float) -> Summary | None:
        if window is None or not window.repeats:
            return None
        return Summary(key, window.first, window.repeats, min(now - window.opened, self.window))


def record_key(record: logging.LogRecord) -> tuple[str, int, str, object]:
    """What makes two log records "the same" (see the module's docstring): it starts with
    the logger's name and the level, which the count is written with."""
    place: tuple[str, str, int] | None = None
    if record.exc_info and record.exc_info[0] is not None:
        kind, _, tb = record.exc_info
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code if tb is not None else None
        place = (kind.__qualname__, code.co_filename if code else "", tb.tb_lineno if tb else 0)
    return (record.name, record.levelno, str(record.msg), place)


class RepeatFilter(logging.Filter):
    """A handler's filter: warnings and errors through ``RepeatedRecords``."""

    def __init__(
        self,
        handler: logging.Handler,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._handler = handler
        self._clock = clock
        self._records = RepeatedRecords(window)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "repeat_summary", False):
            return True
        show, summary = self._records.seen(record_key(record), record.getMessage(), self._clock())
        if summary is not None:
            self._emit(summary)
        return show

    def flush(self, *, every: bool = False) -> None:
        """Write the counts of the windows that ended (``every``: of all of them, at exit)."""
        for summary in self._records.ended(self._clock(), every=every):
            self._emit(summary)

    def _emit(self, summary: Summary) -> None:
        name, level, _, _ = cast(tuple[str, int, str, object], summary.key)
        record = logging.LogRecord(name, level, __file__, 0, summary.message(), None, None)
        record.repeat_summary = True
        self._handler.handle(record)


def configure(prefix: str = "dynos server") -> RepeatFilter:
    """Send the process's log lines to stderr as ``<prefix>: message``; return the filter
    that holds back repeats (the caller flushes it now and then)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    repeats = RepeatFilter(handler)
    handler.addFilter(repeats)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return repeats


async def flush_now_and_then(repeats: RepeatFilter, interval: float = FLUSH_EVERY) -> None:
    """Write the counts of ended windows every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        repeats.flush()
