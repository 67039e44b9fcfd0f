"""Who may use the dashboard, and what every answer of it carries.

- Sign-in takes the API token once, in a form POST; from then on the browser holds only a
  session cookie (HttpOnly, SameSite=Strict, Secure over TLS) naming a session kept in this
  server's memory (core/dashboard.py). No token ever appears in a URL or a page.
- Every state-changing request (any method but GET and HEAD) must come from a page of this
  server (``Origin``, or ``Referer``, matching the scheme and ``Host``) and carry the
  session's CSRF token, in the form's ``csrf`` field or the ``X-CSRF-Token`` header; the
  scripts' JSON reads carry the header too.
- Every answer has a Content-Security-Policy that allows no inline script or style, and
  cannot be framed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from dynos.core.dashboard import Session, SessionTable, SignInThrottle, csrf_matches, same_origin
from dynos.errors import Forbidden, Unauthorized

COOKIE = "dynos_session"
CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
SAFE_METHODS = ("GET", "HEAD")


class Guard:
    """The dashboard's sessions and sign-in throttle, and the checks on each request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = SessionTable()
        self.throttle = SignInThrottle()
        self.clock = clock

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), self.clock())

    def sign_in(self, response: Response, request: Request) -> Session:
        """A new session, its cookie set on ``response`` (a session the browser had ends)."""
        self.sessions.end(request.cookies.get(COOKIE, ""))
        session = self.sessions.create(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        )
        response.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return session

    def sign_out(self, response: Response, request: Request) -> None:
        self.sessions.end(request.cookies.get(COOKIE, ""))
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def require(self, request: Request) -> Session:
        """The request's session, or Unauthorized; for a state-changing request, Forbidden
        unless it came from a page of this server (its CSRF token is checked once its form
        is read: ``check_csrf``)."""
        session = self.session(request)
        if session is None:
            raise Unauthorized("Your dashboard session has ended: sign in again.")
        if request.method not in SAFE_METHODS:
            check_origin(request)
        return session

    def require_script(self, request: Request) -> Session:
        """A script's request (JSON, the log stream): its session and its CSRF header."""
        session = self.require(request)
        check_csrf(session, request.headers.get(CSRF_HEADER))
        return session


def check_csrf(session: Session, given: str | None) -> None:
    if not csrf_matches(session, given):
        raise Forbidden(
            "This request lacks the dashboard's CSRF token: reload the page and try again. "
            "Nothing was changed."
        )


def check_origin(request: Request) -> None:
    """Forbidden unless a state-changing request came from a page of this server."""
    headers = request.headers
    if not same_origin(
        headers.get("origin"), headers.get("referer"), request.url.scheme, headers.get("host")
    ):
        raise Forbidden(
            "This request did not come from a dashboard page of this server (its Origin "
            "does not match the Host): nothing was changed."
        )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
