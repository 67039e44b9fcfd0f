"""Which config vars may be set: the one rule for ``config:set`` and a one-off dyno's ``env``.

A value becomes a process's environment, which the kernel reads as NUL-terminated strings:
a NUL in one cannot be passed on (plain asyncio raises at the spawn, uvloop cuts the value
short), so it is refused where it comes in, before it is stored.
"""

from __future__ import annotations

import re

from dynos.errors import UserError

CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# What the platform sets in each dyno's environment over any config var (manager/environment.py).
PLATFORM_VARS = {
    "PORT": "the port a web dyno must listen on, a new one for each dyno: read $PORT",
    "DYNO": "the dyno's name, such as web.1",
}


def check_config_var(key: str, value: str | None, what: str = "Config var") -> None:
    """Raise UserError unless ``key`` may be set to ``value`` (None: unset, always allowed for
    a well-formed name). ``what`` names the thing in the message: a config var, or a one-off
    dyno's environment variable."""
    if not CONFIG_KEY.fullmatch(key):
        raise UserError(
            f"Invalid {what.lower()} name {key!r}: use letters, digits and '_', "
            "not starting with a digit. Nothing was changed."
        )
    if value is None:
        return  # unsetting one, a platform var included, is harmless
    if "\0" in value:
        raise UserError(
            f"{what} {key} contains a NUL character (\\u0000), which a process's environment "
            "cannot hold: remove it. Nothing was changed."
        )
    if key in PLATFORM_VARS:
        raise UserError(
            f"{key} cannot be set: the platform sets it in every dyno "
            f"({PLATFORM_VARS[key]}), over any config var. Nothing was changed."
        )
