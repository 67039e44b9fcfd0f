"""``settings``, ``settings:set``, ``settings:unset``: an app's platform settings.

``idle_after`` (seconds before a lone 1X web dyno idles; 0 never), ``request_timeout``
(seconds before the router answers H12), ``health_check_path`` (a new web dyno gets traffic
once this path answers 2xx/3xx). Unlike config vars they do not create a release.
"""

from __future__ import annotations

import click

from dynos.cli.commands.config import parse_assignments
from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object
from dynos.errors import UserError


def format_settings(app: str, settings: dict[str, object]) -> list[str]:
    shown = {key: str(settings[key]) for key in sorted(settings)}
    return [header(f"{app} Settings"), *styled_object(shown)]


@click.command()
@app_option
def settings_list(app: str | None) -> None:
    """Show the app's platform settings (only those set; the rest use the server's defaults)."""
    name = require_app(app)
    with connect() as api:
        echo_lines(format_settings(name, api.get(app_path(name, "settings")) or {}))


@click.command()
@app_option
@click.argument("assignments", nargs=-1, metavar="NAME=VALUE...")
def settings_set(app: str | None, assignments: tuple[str, ...]) -> None:
    """Set settings, e.g. idle_after=600 request_timeout=60 health_check_path=/health."""
    values = parse_assignments(assignments)
    name = require_app(app)
    with connect() as api, action(f"Setting {', '.join(values)} on {app_label(name)}"):
        settings = api.patch(app_path(name, "settings"), values) or {}
    echo_lines(format_settings(name, settings))


@click.command()
@app_option
@click.argument("names", nargs=-1, metavar="NAME...")
def settings_unset(app: str | None, names: tuple[str, ...]) -> None:
    """Unset settings: the server's defaults apply again."""
    if not names:
        raise UserError("Nothing to unset: pass setting names, e.g. settings:unset idle_after.")
    name = require_app(app)
    with connect() as api, action(f"Unsetting {', '.join(names)} on {app_label(name)}"):
        api.patch(app_path(name, "settings"), dict.fromkeys(names))


COMMANDS: dict[str, click.Command] = {
    "settings": settings_list,
    "settings:set": settings_set,
    "settings:unset": settings_unset,
}
