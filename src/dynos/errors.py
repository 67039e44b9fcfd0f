"""The one exception tree of dynos.

Every error a user can cause is a ``UserError`` (or a subclass) with a stable ``id`` (Heroku's
error ids: ``invalid_params``, ``not_found``, ``conflict``, ...), an HTTP status, and a message
that says what to do next. The API turns them into ``{"id": ..., "message": ...}``; the CLI
prints the message on one line and exits 1. Lower layers raise these from their own errors
(``raise NotFound(...) from exc``) so that no sqlite3 or OSError reaches a user.
"""

from __future__ import annotations


class DynosError(Exception):
    """Base of every error dynos raises on purpose."""

    id: str = "internal_error"
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "message": self.message}


class UserError(DynosError):
    """The request was wrong: bad parameters, bad Procfile, bad scale argument."""

    id = "invalid_params"
    status = 422


class BadRequest(UserError):
    """The request could not be read at all (malformed JSON, wrong content type)."""

    id = "bad_request"
    status = 400


class Unauthorized(UserError):
    id = "unauthorized"
    status = 401


class Forbidden(UserError):
    """The caller is known, but the thing asked for is not theirs to see or change."""

    id = "forbidden"
    status = 403


class NotFound(UserError):
    id = "not_found"
    status = 404


class Conflict(UserError):
    id = "conflict"
    status = 409


class PlatformError(DynosError):
    """Something on the platform's side failed (a build, a process that would not start)."""

    id = "platform_error"
    status = 500


class BuildFailed(PlatformError):
    id = "build_failed"
    status = 422
