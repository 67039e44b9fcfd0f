"""``config``, ``config:get``, ``config:set``, ``config:unset``: an app's config vars.

Setting or unsetting a var creates a release and restarts the dynos, so each change ends with
the new release's version, as Heroku prints it: ``... and restarting ⬢ app... done, v7``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

import click

from dynos.cli.session import app_option, app_path, connect, latest_version, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object
from dynos.errors import UserError


def format_config(app: str, config: Mapping[str, str | None]) -> list[str]:
    """``=== app Config Vars`` then ``KEY: value`` lines aligned, keys in order."""
    ordered = {key: config[key] for key in sorted(config)}
    return [header(f"{app} Config Vars"), *styled_object(ordered)]


def format_config_shell(config: Mapping[str, str | None]) -> list[str]:
    """``KEY='value'`` lines a shell can source."""
    return [f"{key}={shlex.quote(config[key] or '')}" for key in sorted(config)]


def parse_assignments(args: Sequence[str]) -> dict[str, str]:
    """``KEY=value`` arguments as a dict; raises UserError for one without ``=`` or a key."""
    if not args:
        raise UserError("Nothing to set: pass KEY=VALUE arguments, e.g. config:set DEBUG=1.")
    assignments: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UserError(f"{arg!r} is invalid: use the form KEY=value, e.g. DEBUG=1.")
        assignments[key] = value
    return assignments


def list_keys(keys: Sequence[str]) -> str:
    """``A, B, C``: keys named in an action line, as Heroku lists them."""
    return ", ".join(keys)


def _version_suffix(version: int | None) -> str:
    return f"done, v{version}" if version is not None else "done"


@click.command()
@app_option
@click.option("--json", "as_json", is_flag=True, help="Print the config vars as JSON.")
@click.option("-s", "--shell", is_flag=True, help="Print KEY='value' lines for a shell.")
def config_list(app: str | None, as_json: bool, shell: bool) -> None:
    """Show the app's config vars."""
    name = require_app(app)
    with connect() as api:
        config = api.get(app_path(name, "config-vars")) or {}
    if as_json:
        click.echo(json.dumps(config, indent=2))
    elif shell:
        echo_lines(format_config_shell(config))
    else:
        echo_lines(format_config(name, config))


@click.command()
@app_option
@click.argument("key")
def config_get(app: str | None, key: str) -> None:
    """Print the value of KEY (nothing if it is not set)."""
    name = require_app(app)
    with connect() as api:
        config = api.get(app_path(name, "config-vars")) or {}
    value = config.get(key)
    if value is not None:
        click.echo(value)


@click.command()
@app_option
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
def config_set(app: str | None, assignments: tuple[str, ...]) -> None:
    """Set config vars; the app is released and restarted."""
    values = parse_assignments(assignments)
    name = require_app(app)
    message = f"Setting {list_keys(list(values))} and restarting {app_label(name)}"
    with connect() as api, action(message) as progress:
        config = api.patch(app_path(name, "config-vars"), values) or {}
        progress.done(_version_suffix(latest_version(api, name)))
    shown = {key: config.get(key, values[key]) for key in values}
    echo_lines(styled_object(shown))


@click.command()
@app_option
@click.argument("keys", nargs=-1, metavar="KEY...")
def config_unset(app: str | None, keys: tuple[str, ...]) -> None:
    """Unset config vars; the app is released and restarted."""
    if not keys:
        raise UserError("Nothing to unset: pass the KEY names, e.g. config:unset DEBUG.")
    name = require_app(app)
    message = f"Unsetting {list_keys(list(keys))} and restarting {app_label(name)}"
    with connect() as api, action(message) as progress:
        api.patch(app_path(name, "config-vars"), dict.fromkeys(keys))
        progress.done(_version_suffix(latest_version(api, name)))


COMMANDS: dict[str, click.Command] = {
    "config": config_list,
    "config:get": config_get,
    "config:set": config_set,
    "config:unset": config_unset,
}
