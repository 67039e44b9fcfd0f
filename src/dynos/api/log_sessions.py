"""Log sessions, as Heroku's Logplex hands them out.

``POST /apps/{app}/log-sessions`` answers with a ``logplex_url``; a GET on that URL streams
the lines. The URL is the credential (an unguessable id, no token needed, as with Logplex),
so sessions expire when unused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dynos.logs.hub import LogHub

SESSION_TTL = 300.0  # seconds a log session may wait before its first GET
MAX_LINES = 1500


@dataclass(frozen=True)
class LogSession:
    app: str
    lines: int
    tail: bool
    dyno: str | None
    source: str | None
    id: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    created: float = field(default_factory=time.monotonic)


class LogSessions:
    def __init__(self, hub: LogHub) -> None:
        self._hub = hub
        self._sessions: dict[str, LogSession] = {}

    def create(self, session: LogSession) -> LogSession:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if now - s.created > SESSION_TTL]:
            del self._sessions[key]
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> LogSession | None:
        """The session, while it has not expired (a client may reconnect to its URL)."""
        session = self._sessions.get(session_id)
        if session is None or time.monotonic() - session.created > SESSION_TTL:
            return None
        return session

    async def stream(self, session: LogSession) -> AsyncIterator[bytes]:
        """The session's recent lines, then (with tail) every new line until cancelled."""
        follow = None
        if session.tail:  # subscribe first so nothing falls between backlog and follow
            follow = self._hub.follow(session.app, dyno=session.dyno, source=session.source)
        try:
            backlog = self._hub.recent(
                session.app, session.lines, dyno=session.dyno, source=session.source
            )
            yield "".join(line.format() + "\n" for line in backlog).encode()
            if follow is not None:
                async for line in follow:
                    yield (line.format() + "\n").encode()
        finally:
            if follow is not None:
                follow.close()
