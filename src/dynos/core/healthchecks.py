"""Health checks from an app's ``app.json``, in Dokku's documented shape, and how to judge one.

``app.json``'s ``healthchecks.web`` is a list of checks, each an object with (Dokku's names)
``type`` (``startup``, ``readiness`` or ``liveness``; ``startup`` when left out), ``path``
(``/``), ``attempts`` (3), ``timeout`` (5 s), ``wait`` (5 s between attempts),
``initialDelay`` (0 s), and optionally ``name`` and ``content`` (text the answer must
hold). The defaults are those of Dokku's checker (docker-container-healthchecker).

What each type does here:

- ``startup`` and ``readiness``: a new web dyno gets no request until it passes every one
  (with or without preboot). dynos has no later readiness probing: a readiness check gates
  the start only, as a startup check does.
- ``liveness``: asked every ``wait`` seconds once the dyno is up; ``attempts`` failures in a
  row restart the dyno, with a log line that says why.

Dokku's other kinds of check (``command``, ``listening``, ``uptime``) and fields that have
no meaning for a dyno (``port``: a dyno serves on its own ``$PORT``; ``scheme``, headers)
are refused with a message that says so, rather than silently ignored: an app would
otherwise believe it is checked when it is not. Pure: text in, checks or a UserError out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from dynos.errors import UserError

MAX_APP_JSON = 1 << 20  # bytes: app.json describes an app, it holds no data
MAX_CHECKS = 20  # per process type
MAX_SECONDS = 600  # for any one of timeout, wait, initialDelay
MAX_ATTEMPTS = 100


class CheckType(StrEnum):
    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"


@dataclass(frozen=True)
class HealthCheck:
    type: CheckType
    path: str = "/"
    attempts: int = 3
    timeout: float = 5.0  # seconds one attempt may take
    wait: float = 5.0  # seconds between attempts (and between liveness rounds)
    initial_delay: float = 0.0  # seconds after the dyno listens before the first attempt
    name: str = ""
    content: str | None = None  # the body must contain this text

    @property
    def label(self) -> str:
        """How log lines name the check."""
        return (
            f"{self.type} check {self.name!r} (GET {self.path})"
            if self.name
            else (f"{self.type} check GET {self.path}")
        )

    def verdict(self, status: int, body: bytes) -> str | None:
        """Why an answer fails this check, or None when it passes: a 2xx or 3xx status
        (as Heroku's and Dokku's checks take it), and the content when one is asked for."""
        if not 200 <= status < 400:
            return f"answered {status}"
        if self.content is not None and self.content.encode() not in body:
            return f"answered {status} without {self.content!r} in its body"
        return None


@dataclass(frozen=True)
class HealthChecks:
    """An app's web health checks (other process types take none: they serve no HTTP)."""

    web: tuple[HealthCheck, ...] = ()

    @property
    def gating(self) -> tuple[HealthCheck, ...]:
        """The checks a new web dyno must pass before it gets requests."""
        return tuple(c for c in self.web if c.type is not CheckType.LIVENESS)

    @property
    def liveness(self) -> tuple[HealthCheck, ...]:
        return tuple(c for c in self.web if c.type is CheckType.LIVENESS)


NO_CHECKS = HealthChecks()

_UNSUPPORTED = {
    "port": "dynos checks each web dyno on its own $PORT: remove 'port'",
    "command": "dynos runs HTTP checks only: remove 'command'",
    "listening": "a web dyno is always checked for listening on $PORT first: remove 'listening'",
    "uptime": "dynos has no uptime checks: use 'initialDelay' with an HTTP check",
    "scheme": "the checks reach a dyno over plain HTTP on $PORT: remove 'scheme'",
    "httpHeaders": "dynos sends no extra headers with a check: remove 'httpHeaders'",
    "onFailure": "dynos has no failure hooks: remove 'onFailure'",
}
_KNOWN = {"type", "path", "attempts", "timeout", "wait", "initialDelay", "name", "content"}
_KNOWN |= {"description", "warn"}  # informative only: accepted and not acted on


def parse_app_json(text: bytes | str) -> HealthChecks:
    """The health checks of an ``app.json``'s text; UserError naming the field otherwise."""
    if len(text) > MAX_APP_JSON:
        raise UserError("app.json is over 1 MB: it should describe the app, not hold data.")
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"app.json is not valid JSON ({exc}): fix it and deploy again.") from exc
    if not isinstance(document, dict):
        raise UserError("app.json must hold a JSON object: fix it and deploy again.")
    section = document.get("healthchecks")
    if section is None:
        return NO_CHECKS
    if not isinstance(section, dict):
        raise _bad("healthchecks", 'must be an object of process types, like {"web": [...]}')
    for type_ in section:
        if type_ != "web":
            raise _bad(
                f"healthchecks.{type_}", "only web dynos are checked (they serve HTTP): use 'web'"
            )
    checks = section.get("web", [])
    if not isinstance(checks, list):
        raise _bad("healthchecks.web", "must be a list of checks")
    if len(checks) > MAX_CHECKS:
        raise _bad("healthchecks.web", f"has {len(checks)} checks: at most {MAX_CHECKS}")
    return HealthChecks(tuple(_check(f"healthchecks.web[{i}]", c) for i, c in enumerate(checks)))


def _check(where: str, raw: object) -> HealthCheck:
    if not isinstance(raw, dict):
        raise _bad(where, 'must be an object such as {"type": "startup", "path": "/"}')
    for key in raw:
        if key in _UNSUPPORTED:
            raise _bad(f"{where}.{key}", _UNSUPPORTED[key])
        if key not in _KNOWN:
            raise _bad(f"{where}.{key}", f"is not a health check field (known: {_known()})")
    type_text = raw.get("type", "startup")
    try:
        type_ = CheckType(type_text)
    except ValueError:
        raise _bad(f"{where}.type", "must be startup, readiness or liveness") from None
    path = raw.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/") or not path.isprintable():
        raise _bad(f"{where}.path", "must be a path starting with '/', such as '/health'")
    if " " in path or len(path) > 2048:
        raise _bad(f"{where}.path", "must hold no spaces and be at most 2048 characters")
    name, content = raw.get("name", ""), raw.get("content")
    if not isinstance(name, str):
        raise _bad(f"{where}.name", "must be a string")
    if content is not None and (not isinstance(content, str) or not content):
        raise _bad(f"{where}.content", "must be a non-empty string")
    return HealthCheck(
        type_,
        path,
        attempts=int(_number(raw, "attempts", where, 3, minimum=1, maximum=MAX_ATTEMPTS)),
        timeout=_number(raw, "timeout", where, 5, minimum=1, maximum=MAX_SECONDS),
        wait=_number(raw, "wait", where, 5, minimum=0, maximum=MAX_SECONDS),
        initial_delay=_number(raw, "initialDelay", where, 0, minimum=0, maximum=MAX_SECONDS),
        name=name,
        content=content,
    )


def _number(
    raw: dict[str, object], key: str, where: str, default: int, *, minimum: int, maximum: int
) -> float:
    value = raw.get(key, default)
    # Dokku documents these as ints; fractions are harmless (and let tests be quick).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{where}.{key}", f"must be a number from {minimum} to {maximum}")
    if not minimum <= value <= maximum:
        raise _bad(f"{where}.{key}", f"must be from {minimum} to {maximum}, not {value}")
    if key == "attempts" and value != int(value):
        raise _bad(f"{where}.{key}", "must be a whole number")
    return float(value)


def _known() -> str:
    return ", ".join(sorted(_KNOWN - {"description", "warn"}))


def _bad(where: str, why: str) -> UserError:
    return UserError(f"app.json: {where} {why}. Fix app.json and deploy again.")
