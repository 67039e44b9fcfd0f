"""The web dashboard's sign-in rules: server-side sessions, the throttle on failed sign-ins,
and the same-origin test every state-changing request passes.

Pure: the caller brings the random ids and ``now`` (monotonic seconds); nothing here reads a
clock, a socket or the token itself.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IDLE_TIMEOUT = 2 * 3600.0  # a session unused this long is over: sign in again
MAX_AGE = 24 * 3600.0  # and none lasts longer, however busy
MAX_SESSIONS = 1000  # the oldest go first: sign-ins cannot grow the table without bound

FAILURES_ALLOWED = 5  # failed sign-ins from one address within FAILURE_WINDOW ...
FAILURE_WINDOW = 15 * 60.0  # ... before it must wait until the oldest of them is this old
MAX_ADDRESSES = 10_000  # addresses remembered; the least recent are forgotten


@dataclass
class Session:
    id: str  # the cookie's value
    csrf: str  # the token every form and script request of this session carries
    created: float
    last_seen: float
    flash: list[str] = field(default_factory=list)  # messages for the next page shown

    def take_flash(self) -> list[str]:
        messages, self.flash = self.flash, []
        return messages


class SessionTable:
    """Signed-in browsers, by cookie value. A session ends at sign-out, after IDLE_TIMEOUT
    unused, MAX_AGE after sign-in, or when MAX_SESSIONS newer ones push it out."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest sign-in first

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, session_id: str, csrf: str, now: float) -> Session:
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        session = Session(session_id, csrf, created=now, last_seen=now)
        self._sessions[session_id] = session
        return session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id, marked used now; None for no, an unknown or an
        expired id."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if expired(session, now):
            del self._sessions[session_id]
            return None
        session.last_seen = now
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if expired(s, now)]:
            del self._sessions[key]


def expired(session: Session, now: float) -> bool:
    return now - session.last_seen > IDLE_TIMEOUT or now - session.created > MAX_AGE


def csrf_matches(session: Session, given: str | None) -> bool:
    """Whether a request carries its session's CSRF token (compared in constant time)."""
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())


class SignInThrottle:
    """Failed sign-ins per client address: after FAILURES_ALLOWED within FAILURE_WINDOW, the
    address waits (every attempt refused, a right token too, so that waiting is the only way
    on) until the oldest failure leaves the window. A success forgets the address."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, address: str, now: float) -> float:
        """Seconds ``address`` must wait before its next attempt is judged; 0 when it may."""
        failures = self._recent(address, now)
        if len(failures) < FAILURES_ALLOWED:
            return 0.0
        return failures[0] + FAILURE_WINDOW - now

    def failed(self, address: str, now: float) -> None:
        failures = self._recent(address, now)
        failures.append(now)
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and now - failures[0] >= FAILURE_WINDOW:
            failures.popleft()
        return failures


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str | None) -> bool:
    """Whether a request came from a page of this very server: its ``Origin`` (or, where a
    browser sent none, its ``Referer``) names the scheme and ``Host`` the request was sent
    to. A request with neither, or with ``Origin: null`` (a sandboxed or privacy-stripped
    context), is refused: every browser the dashboard supports sends one on a POST."""
    if not host:
        return False
    source = origin if origin is not None else referer
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()
