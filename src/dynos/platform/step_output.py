"""A build step's output, a line at a time, until the step ends or its deadline passes.

A step's processes may hold its pipe open after it ended (one that escaped the kill, a
daemon it started): the pipe is then read for ``DRAIN_TIMEOUT`` more, no longer, so that a
build never waits on what it could not stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

LINE_LIMIT = 1 << 20  # a longer output line is passed on in pieces
DRAIN_TIMEOUT = 1.0  # seconds to read what a finished step left in its pipe


async def step_output(
    stream: asyncio.StreamReader, reaper: asyncio.Task[int], deadline: float
) -> AsyncIterator[bytes]:
    """The step's output, a line at a time, until its end; TimeoutError past ``deadline``.
    Once the step has ended, a pipe that stays open (held by a process that escaped the
    kill) is read for DRAIN_TIMEOUT more, no longer."""
    loop = asyncio.get_running_loop()
    while True:
        read = asyncio.ensure_future(read_line(stream))
        try:
            if not reaper.done():
                remaining = max(0.0, deadline - loop.time())
                await asyncio.wait({read, reaper}, timeout=remaining, return_when="FIRST_COMPLETED")
                if not read.done() and not reaper.done():
                    raise TimeoutError
            if not read.done():
                remaining = max(0.0, deadline - loop.time())
                await asyncio.wait({read}, timeout=min(DRAIN_TIMEOUT, remaining))
                if not read.done():
                    return
            raw = read.result()
        finally:
            read.cancel()
        if not raw:
            return
        yield raw


async def read_line(stream: asyncio.StreamReader) -> bytes:
    try:
        return await stream.readline()
    except ValueError:  # a line longer than LINE_LIMIT: take what is buffered
        return await stream.read(LINE_LIMIT)
