"""Log lines in Heroku's format: ``2026-11-27T03:50:00.123456+00:00 app[web.1]: message``.

Sources follow Heroku: ``app`` for what a dyno prints and for API actions (``app[api]``),
``dynos`` (Heroku's ``heroku``) for the platform's own lines about a dyno and the router.
"""

from __future__ import annotations

from datetime import UTC, datetime

APP = "app"
PLATFORM = "dynos"


class LogLine:
    """One line; treat it as immutable.

    A plain ``__slots__`` class rather than a frozen dataclass: the router makes one per
    request, and a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (about three times the cost). Equality, hash and repr are a
    dataclass's.
    """

    __slots__ = ("at", "dyno", "message", "source")

    def __init__(self, at: datetime, source: str, dyno: str, message: str) -> None:
        self.at = at
        self.source = source  # "app" or "dynos"
        self.dyno = dyno  # "web.1", "router", "api"
        self.message = message

    def _key(self) -> tuple[datetime, str, str, str]:
        return (self.at, self.source, self.dyno, self.message)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, LogLine)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"LogLine(at={self.at!r}, source={self.source!r}, dyno={self.dyno!r}, "
            f"message={self.message!r})"
        )

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
