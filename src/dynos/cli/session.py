"""What every command shares: the ``-a/--app`` option and a connected API client.

Tests pass a :class:`CliState` as click's ``obj`` to give commands an httpx transport (no
sockets) and an environment of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import click
import httpx

from dynos.cli.client import ApiClient, locate_server
from dynos.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    transport: httpx.BaseTransport | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)


def current_state() -> CliState:
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(CliState) if ctx is not None else None
    return state if state is not None else CliState()


def connect() -> ApiClient:
    """A client for the server found from the environment; raises ServerUnreachable if none."""
    state = current_state()
    info = locate_server(state.env)
    return ApiClient(info.api_url, info.token, transport=state.transport)


def app_option(func: F) -> F:
    """The ``-a/--app APP`` option (env ``DYNOS_APP``), passed to the command as ``app``."""
    return click.option(
        "-a",
        "--app",
        "app",
        envvar="DYNOS_APP",
        metavar="APP",
        help="The app to act on (default: $DYNOS_APP).",
    )(func)


def require_app(app: str | None) -> str:
    """The app name, or a UserError saying how to choose one."""
    if not app:
        raise UserError("No app specified: pass -a APP or set DYNOS_APP.")
    return app


def app_path(app: str, *parts: str) -> str:
    """``/apps/<app>/<parts>`` with every segment escaped."""
    segments = [quote(app, safe=""), *(quote(p, safe="") for p in parts)]
    return "/apps/" + "/".join(segments)


def latest_version(api: ApiClient, app: str) -> int | None:
    """The version of the app's newest release (releases come oldest first), or None."""
    releases = api.get(app_path(app, "releases"))
    if not isinstance(releases, list) or not releases:
        return None
    versions = [r.get("version") for r in releases if isinstance(r, dict)]
    numbers = [v for v in versions if isinstance(v, int)]
    return max(numbers) if numbers else None
