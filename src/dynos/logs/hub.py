"""The log aggregator: a ring buffer of recent lines per app, and live subscribers.

Everything that has something to say about an app (dyno output, the router, the manager, the
API) calls :meth:`LogHub.emit`. Emitting never blocks and never awaits: a slow `logs --tail`
client loses lines (its queue is bounded) rather than slowing a dyno or the router down.
Sinks (an app's log drains, platform/drain_sender.py) are called with each line as it is
emitted, and must return at once just the same: they only put it in a bounded buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from dynos.logs.logline import LogLine, matches

RING_SIZE = 5000  # Heroku keeps 1,500; we keep more, it costs little
SUBSCRIBER_BACKLOG = 10_000


class LogHub:
    def __init__(self, ring_size: int = RING_SIZE) -> None:
        self._ring_size = ring_size
        self._rings: dict[str, deque[LogLine]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[LogLine]]] = {}
        self._sinks: dict[str, list[Callable[[LogLine], None]]] = {}
        self._watchers: list[Callable[[str, LogLine], None]] = []

    def watch(self, watcher: Callable[[str, LogLine], None]) -> None:
        """Call ``watcher(app, line)`` for every line emitted one at a time (the platform's,
        the dynos'), but not for batches (the router's request lines): the metrics' events
        are read there (platform/metrics.py). A watcher must return at once."""
        self._watchers.append(watcher)

    def emit(
        self, app: str, source: str, dyno: str, message: str, at: datetime | None = None
    ) -> None:
        line = LogLine(at or datetime.now(UTC), source, dyno, message)
        for watcher in self._watchers:
            watcher(app, line)
        self._append(app, line)

    def _append(self, app: str, line: LogLine) -> None:
        ring = self._rings.get(app)
        if ring is None:
            ring = self._rings[app] = deque(maxlen=self._ring_size)
        ring.append(line)
        for queue in self._subscribers.get(app, ()):
            if queue.qsize() < SUBSCRIBER_BACKLOG:
                queue.put_nowait(line)
        for sink in self._sinks.get(app, ()):
            sink(line)

    def emit_batch(
        self, source: str, dyno: str, at: datetime, lines: list[tuple[str, str]]
    ) -> None:
        """Emit ``(app, message)`` lines with one source, dyno and time (the router's)."""
        for app, message in lines:
            self._append(app, LogLine(at, source, dyno, message))

    def recent(
        self, app: str, n: int, *, dyno: str | None = None, source: str | None = None
    ) -> list[LogLine]:
        """The last ``n`` lines of ``app`` that pass the filters, oldest first."""
        picked: list[LogLine] = []
        for line in reversed(self._rings.get(app, ())):
            if len(picked) >= n:
                break
            if matches(line, dyno=dyno, source=source):
                picked.append(line)
        picked.reverse()
        return picked

    def follow(
        self, app: str, *, dyno: str | None = None, source: str | None = None
    ) -> Subscription:
        """Subscribe now to every new line of ``app`` that passes the filters.

        The subscription starts at once (no line emitted after this call is missed); iterate
        it to receive lines and ``close()`` it when done.
        """
        subscription = Subscription(self, app, dyno, source)
        self._subscribers.setdefault(app, set()).add(subscription.queue)
        return subscription

    def _unsubscribe(self, app: str, queue: asyncio.Queue[LogLine]) -> None:
        self._subscribers.get(app, set()).discard(queue)

    def add_sink(self, app: str, sink: Callable[[LogLine], None]) -> None:
        """Call ``sink`` with every line of ``app`` from now on; it must neither block nor
        raise (the emitter, a dyno's output or the router, would wait or fail)."""
        self._sinks.setdefault(app, []).append(sink)

    def remove_sink(self, app: str, sink: Callable[[LogLine], None]) -> None:
        sinks = self._sinks.get(app, [])
        if sink in sinks:
            sinks.remove(sink)
        if not sinks:
            self._sinks.pop(app, None)

    def forget(self, app: str) -> None:
        """Drop everything kept for ``app`` (it was destroyed)."""
        self._rings.pop(app, None)


class Subscription:
    """Live lines of one app; an async iterator that ends only when closed or cancelled."""

    def __init__(self, hub: LogHub, app: str, dyno: str | None, source: str | None) -> None:
        self._hub = hub
        self._app = app
        self._dyno = dyno
        self._source = source
        self.queue: asyncio.Queue[LogLine] = asyncio.Queue()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LogLine:
        while True:
            line = await self.queue.get()
            if matches(line, dyno=self._dyno, source=self._source):
                return line

    def close(self) -> None:
        self._hub._unsubscribe(self._app, self.queue)
