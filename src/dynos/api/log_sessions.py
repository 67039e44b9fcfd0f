"""Log sessions, as Heroku's Logplex hands them out.

``POST /apps/{app}/log-sessions`` answers with a ``logplex_url``; a GET on that URL streams
the lines. The URL is the credential (an unguessable key, no token needed, as with Logplex),
so sessions expire when unused: SESSION_TTL after they were created or last streamed (an
EventSource reconnects to the same URL when its stream breaks).

The stream speaks two framings of the same lines: Server-Sent Events (``text/event-stream``,
one ``data:`` line per log line) for clients that ask for them in ``Accept`` — the heroku
CLI reads log sessions with an EventSource — and plain text, one line per line, for
everything else (the dynos CLI, curl).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from dynos.errors import UserError
from dynos.logs.hub import LogHub
from dynos.logs.logline import APP, PLATFORM, LogLine

SESSION_TTL = 300.0  # seconds a log session may wait before its (re)connection
MAX_LINES = 1500
KEEPALIVE = 15.0  # seconds of silence before an event stream gets a comment line

# Heroku calls the platform's own log source "heroku"; dynos calls it "dynos". Both filter.
SOURCE_ALIASES = {"heroku": PLATFORM}
SOURCES = (APP, "heroku", PLATFORM)


def check_source(source: str | None) -> str | None:
    """A ``logs -s`` source as given, or UserError for one no line has. The router is a dyno
    of the platform's source (``heroku[router]``), not a source: a filter on it would be
    silently empty."""
    if source is None or source in SOURCES:
        return source
    hint = " Router lines are heroku[router]: use -d router." if source == "router" else ""
    raise UserError(
        f"Unknown log source {source!r}: sources are app (the dynos' output and app[api]) "
        f"and heroku (the platform's lines; also called dynos).{hint}"
    )


@dataclass(frozen=True)
class LogSession:
    app: str
    lines: int
    tail: bool
    dyno: str | None
    source: str | None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    key: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # the URL's secret


class LogSessions:
    def __init__(self, hub: LogHub, clock: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        self._clock = clock
        self._sessions: dict[str, LogSession] = {}
        self._used: dict[str, float] = {}  # URL key -> when it was created or last streamed

    def create(self, session: LogSession) -> LogSession:
        now = self._clock()
        for key in [k for k, used in self._used.items() if now - used > SESSION_TTL]:
            del self._sessions[key], self._used[key]
        self._sessions[session.key] = session
        self._used[session.key] = now
        return session

    def get(self, key: str) -> LogSession | None:
        """The session with this URL key while it has not expired (clients may reconnect)."""
        used = self._used.get(key)
        if used is None or self._clock() - used > SESSION_TTL:
            return None
        self._used[key] = self._clock()
        return self._sessions[key]

    async def stream(self, session: LogSession, *, events: bool) -> AsyncIterator[bytes]:
        """The session's recent lines, then (with tail) every new line until cancelled.

        ``events`` frames them as Server-Sent Events, otherwise as plain text lines.
        """
        frame = sse_frame if events else plain_frame
        source = SOURCE_ALIASES.get(session.source or "", session.source)
        follow = None
        if session.tail:  # subscribe first so nothing falls between backlog and follow
            follow = self._hub.follow(session.app, dyno=session.dyno, source=source)
        try:
            backlog = self._hub.recent(session.app, session.lines, dyno=session.dyno, source=source)
            yield b"".join(frame(line) for line in backlog)
            if follow is None:
                return
            lines = aiter(follow)
            while True:
                if not events:
                    yield frame(await anext(lines))
                    continue
                try:
                    line = await asyncio.wait_for(anext(lines), KEEPALIVE)
                except TimeoutError:
                    yield b": keep-alive\n\n"  # a comment: clients ignore it, dead peers show
                    continue
                yield frame(line)
        finally:
            if follow is not None:
                follow.close()
            if session.key in self._used:
                self._used[session.key] = self._clock()


def plain_frame(line: LogLine) -> bytes:
    return (line.format() + "\n").encode()


def sse_frame(line: LogLine) -> bytes:
    """One event per log line; a message with line breaks becomes several ``data:`` lines."""
    parts = line.format().splitlines() or [""]
    return ("".join(f"data: {part}\n" for part in parts) + "\n").encode()
