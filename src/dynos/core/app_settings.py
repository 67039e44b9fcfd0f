"""Per-app platform settings: what they are called, what values they take, their defaults.

``idle_after`` (seconds without a request before a lone idling-size web dyno sleeps; 0 never
idles), ``request_timeout`` (seconds the router waits for a dyno's response headers: H12),
``health_check_path`` (a path a new web dyno must answer with 2xx/3xx before it gets traffic).
"""

from __future__ import annotations

import math

from dynos.errors import UserError

DEFAULT_REQUEST_TIMEOUT = 30.0
SETTINGS = ("idle_after", "request_timeout", "health_check_path")


def parse_setting(name: str, value: object) -> object:
    """The stored value for ``name`` given ``value`` (a number, or its text); None unsets.

    Raises UserError for an unknown name or a value out of range.
    """
    if value is None:
        if name not in SETTINGS:
            raise UserError(f"Unknown setting {name!r}. Settings: {', '.join(SETTINGS)}.")
        return None
    if name == "idle_after":
        seconds = _number(name, value)
        if seconds < 0:
            raise UserError("idle_after must be 0 (never idle) or more seconds.")
        return int(seconds)
    if name == "request_timeout":
        seconds = _number(name, value)
        if not 1 <= seconds <= 3600:
            raise UserError("request_timeout must be between 1 and 3600 seconds.")
        return seconds
    if name == "health_check_path":
        if not isinstance(value, str) or not value.startswith("/") or " " in value:
            raise UserError("health_check_path must be a path like /health.")
        return value
    raise UserError(f"Unknown setting {name!r}. Settings: {', '.join(SETTINGS)}.")


def _number(name: str, value: object) -> float:
    """A finite number of seconds: "inf", "nan" or 1e999 (JSON's infinity) would reach int()
    or a timer as no number at all, and an integer past a float's range cannot be one."""
    if isinstance(value, bool):
        raise UserError(f"{name} must be a number of seconds, not {value!r}.")
    seconds = None
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = float(value.strip().removesuffix("s"))
    except (ValueError, OverflowError):
        pass
    if seconds is None or not math.isfinite(seconds):
        shown = "a number that large" if isinstance(value, int) else repr(value)
        raise UserError(f"{name} must be a finite number of seconds, e.g. 600, not {shown}.")
    return seconds
