"""The log aggregator: a ring buffer of recent lines per app, and live subscribers.

Everything that has something to say about an app (dyno output, the router, the manager, the
API) calls :meth:`LogHub.emit`. Emitting never blocks and never awaits: a slow `logs --tail`
client loses lines (its queue is bounded) rather than slowing a dyno or the router down.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime

from dynos.logs.logline import LogLine, matches

RING_SIZE = 5000  # Heroku keeps 1,500; we keep more, it costs little
SUBSCRIBER_BACKLOG = 10_000


class LogHub:
    def __init__(self, ring_size: int = RING_SIZE) -> None:
        self._ring_size = ring_size
        self._rings: dict[str, deque[LogLine]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[LogLine]]] = {}

    def emit(
        self, app: str, source: str, dyno: str, message: str, at: datetime | None = None
    ) -> None:
        line = LogLine(at or datetime.now(UTC), source, dyno, message)
        ring = self._rings.get(app)
        if ring is None:
            ring = self._rings[app] = deque(maxlen=self._ring_size)
        ring.append(line)
        for queue in self._subscribers.get(app, ()):
            if queue.qsize() < SUBSCRIBER_BACKLOG:
                queue.put_nowait(line)

    def emit_batch(
        self, source: str, dyno: str, at: datetime, lines: list[tuple[str, str]]
    ) -> None:
        """Emit ``(app, message)`` lines with one source, dyno and time (the router's)."""
        for app, message in lines:
            self.emit(app, source, dyno, message, at)

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
