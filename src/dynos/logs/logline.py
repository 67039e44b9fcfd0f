"""Log lines in Heroku's format: ``2026-11-27T03:50:00.123456+00:00 app[web.1]: message``.

Sources follow Heroku: ``app`` for what a dyno prints and for API actions (``app[api]``),
``dynos`` (Heroku's ``heroku``) for the platform's own lines about a dyno and the router.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

APP = "app"
PLATFORM = "dynos"


@dataclass(frozen=True, slots=True)
class LogLine:
    at: datetime
    source: str  # "app" or "dynos"
    dyno: str  # "web.1", "router", "api"
    message: str

    def format(self) -> str:
        stamp = self.at.astimezone(UTC).isoformat(timespec="microseconds")
        return f"{stamp} {self.source}[{self.dyno}]: {self.message}"


def matches(line: LogLine, *, dyno: str | None = None, source: str | None = None) -> bool:
    """Whether ``line`` passes the ``logs -d/-p`` and ``-s`` filters.

    ``dyno`` is a dyno name (``web.1``) or a process type (``web`` matches every web dyno).
    """
    if source is not None and line.source != source:
        return False
    return dyno is None or line.dyno == dyno or line.dyno.split(".", 1)[0] == dyno
