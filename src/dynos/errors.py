"""The one exception tree of dynos.

Every error a user can cause is a ``UserError`` (or a subclass) with a stable ``id`` (Heroku's
error ids: ``invalid_params``, ``not_found``, ``conflict``, ...), an HTTP status, and a message
that says what to do next. The API turns them into ``{"id": ..., "message": ...}``; the CLI
prints the message on one line and exits 1. Lower layers raise these from their own errors
(``raise NotFound(...) from exc``) so that no sqlite3 or OSError reaches a user.

The whole tree, with the subclasses that live elsewhere (docs/architecture.md keeps the same
drawing)::

    DynosError                     id, HTTP status, a message that says what to do
    ├── UserError                  422 invalid_params: the request was wrong
    │   ├── BadRequest             400 bad_request: unreadable request
    │   │   └── UnsupportedMediaType   415: a body not sent as JSON (or gzip for deploys)
    │   ├── Unauthorized           401
    │   ├── Forbidden              403
    │   ├── NotFound               404 not_found
    │   ├── Conflict               409 conflict
    │   ├── Refused                platform/slug_archive.py: an upload that breaks a rule
    │   ├── RangeNotSatisfiable    api/ranges.py: 416
    │   ├── EngineUnavailable      backends/engine.py: 503, no Docker engine answers
    │   ├── StackImageMissing      backends/engine.py: 503, run `dynos stack:build`
    │   ├── NotSwarmManager        503: --backend swarm on an engine that is no swarm's manager
    │   └── RegistryUnreachable    503: the registry the swarm's nodes pull from does not answer
    ├── PlatformError              500: the platform could not do it (a process, a file)
    │   ├── BuildFailed            a build step failed or timed out
    │   ├── ReleaseFailed          a release command failed: the release before serves on
    │   ├── Unavailable            503 unavailable: try again later
    │   │   ├── DatabaseLocked     another process holds the database
    │   │   └── DatabaseDamaged    the file is not a sound database: restore a backup
    │   ├── FirewallError          backends/firewall.py: nftables refused a change
    │   ├── PortTaken              an add-on server's port is another process's now (it moves)
    │   └── AcmeFailed             platform/acme_client.py: an ACME order failed (its reason is the
    │                              app's acm_status_reason; the scheduler retries)
    ├── ServerUnreachable          cli/client.py: no server answers
    ├── ApiError                   cli/client.py: the server answered with an error
    └── ServerFailed               cli/commands/up.py: the server `dynos up` started died

Outside the tree, on purpose: ``router.forwarding.MalformedRequest`` (a ValueError the router
answers with 400 on its hot path) and ``router.StaleBuildError`` (an ImportError: compiled
router modules older than their source).
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


class UnsupportedMediaType(BadRequest):
    """A request body in a type the endpoint does not read (a form, text/plain for JSON):
    refused before it is read, so that a cross-site form can never act on the API."""

    id = "unsupported_media_type"
    status = 415


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


class NotSwarmManager(UserError):
    """``--backend swarm`` on an engine that is not a manager of an active swarm."""

    id = "not_swarm_manager"
    status = 503


class RegistryUnreachable(UserError):
    """The registry the swarm's nodes pull release images from does not answer."""

    id = "registry_unreachable"
    status = 503


class PlatformError(DynosError):
    """Something on the platform's side failed (a build, a process that would not start)."""

    id = "platform_error"
    status = 500


class BuildFailed(PlatformError):
    id = "build_failed"
    status = 422


class ReleaseFailed(PlatformError):
    """A release phase failed (non-zero exit, crash, timeout): the release never went live."""

    id = "release_failed"
    status = 422


class Unavailable(PlatformError):
    """The platform cannot serve the request now; nothing was changed, and a retry may work."""

    id = "unavailable"
    status = 503


class PortTaken(PlatformError):
    """An add-on server's port (Redis's, the Postgres cluster's) is another process's now: it
    was free when it was picked. The server moves to another and its apps are released."""


class DatabaseLocked(Unavailable):
    """Another process holds the state database's write lock past the store's wait."""


class DatabaseDamaged(Unavailable):
    """The state database is unreadable: the server refuses to run on it until restored."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # what SQLite said, e.g. "file is not a database"
