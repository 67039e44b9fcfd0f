"""One drain's delivery: the log hub's sink that buffers an app's lines, and the task that
sends them in batches (core/drain_queue.py's rules) through a transport.

The sink (:meth:`DrainSender.offer`) runs inside ``LogHub.emit``, in whatever emitted the line
(the router, a dyno's output reader): it only pushes into the bounded queue and sets an event,
never awaits. Everything slow (resolving, connecting, a receiver that does not answer) happens
in the sender's own task, under a deadline per send, so a hung drain holds only its own lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from dynos.core.drain_frames import HTTP_HOSTNAME, lines_frames, overflow_frame
from dynos.core.drain_queue import Batch, DeliveryRules, DrainQueue
from dynos.core.drains import DrainTarget
from dynos.logs.logline import PLATFORM, LogLine
from dynos.platform.drain_transports import DeliveryFailed, Transport

log = logging.getLogger(__name__)


def new_frame_id() -> str:
    """Heroku's frame id form: 32 upper-case hex digits."""
    return uuid.uuid4().hex.upper()


class DrainSender:
    def __init__(
        self,
        drain_id: str,
        token: str,
        target: DrainTarget,
        transport: Transport,
        rules: DeliveryRules,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drain_id = drain_id
        self.token = token
        self.target = target
        self.queue: DrainQueue[LogLine] = DrainQueue(rules, new_frame_id)
        self._transport = transport
        self._clock = clock
        self._wake = asyncio.Event()
        self._wake_at = (1, rules.batch_size)  # waiting lines that make a batch due sooner
        self._failing = False
        # HTTPS drains carry the token in a header, syslog drains in each message's HOSTNAME.
        self._hostname = HTTP_HOSTNAME if target.http else token

    def offer(self, line: LogLine) -> None:
        """The hub's sink: hold the line (or count it dropped). Never waits. The task is woken
        only when the line changes when the next batch is due (a first line after none, a
        full batch), not for every line: a wake-up costs more than holding a line."""
        if self.queue.push(line, line.at) and self.queue.waiting in self._wake_at:
            self._wake.set()

    def body(self, batch: Batch[LogLine]) -> bytes:
        """The batch's frames; the same bytes every time it is sent."""
        lines = lines_frames(
            ((line.at, line.source, line.dyno, line.message) for line in batch.lines),
            self._hostname,
        )
        if batch.overflow is None:
            return lines
        return overflow_frame(batch.overflow, self._hostname, PLATFORM) + lines

    async def run(self) -> None:
        """Send batches until cancelled."""
        try:
            while True:
                wait = self.queue.due(self._clock())
                if wait is None or wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    continue
                batch = self.queue.take(self._clock(), _wall())
                if batch is not None:
                    await self._send(batch, self.queue.rules.timeout)
        finally:
            await self._transport.close()

    async def _send(self, batch: Batch[LogLine], timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._transport.send(batch.frame_id, batch.count, self.body(batch))
        except Exception as exc:
            if not isinstance(exc, DeliveryFailed | TimeoutError):
                # A bug of ours, not the drain's: logged whole, and the batch retried as any
                # failure (the sender's task must not die, the drain would go silent).
                log.exception("drain %s: sending a batch failed unexpectedly", self.drain_id)
            reason = str(exc) or f"no answer in {timeout:g} s"
            delay = self.queue.failed(batch, self._clock(), _wall())
            if not self._failing:
                self._failing = True
                log.warning("drain %s (%s): %s", self.drain_id, self.target.host, reason)
            if delay is None:
                log.warning(
                    "drain %s: gave up a batch of %d lines after %d attempts",
                    self.drain_id,
                    len(batch.lines),
                    self.queue.rules.attempts,
                )
            return
        self.queue.delivered(batch)
        if self._failing:
            self._failing = False
            log.info("drain %s (%s): delivering again", self.drain_id, self.target.host)


def _wall() -> datetime:
    return datetime.now(UTC)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
