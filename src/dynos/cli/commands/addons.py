"""``addons``, ``addons:create``, ``addons:destroy``: an app's managed backing services.

Output follows the Heroku CLI: ``Creating redis on ⬢ app... done`` then ``Created
redis-solid-31337 as REDIS_URL``; ``addons`` prints a table of add-on, plan, price and state,
each add-on followed by its attachment (`` └─ as REDIS``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, table
from dynos.errors import UserError

Addon = Mapping[str, Any]

STATES = {"provisioned": "created", "provisioning": "creating", "deprovisioned": "errored"}


def format_addons(app: str, addons: Sequence[Addon]) -> list[str]:
    """The ``addons`` table, or a sentence when there are none."""
    if not addons:
        return [f"No add-ons for app {app}."]
    rows: list[list[str]] = []
    for addon in sorted(addons, key=lambda a: str(a.get("name", ""))):
        service = (addon.get("addon_service") or {}).get("name", "?")
        plan = str((addon.get("plan") or {}).get("name", "?")).partition(":")[2] or "?"
        state = str(addon.get("state", ""))
        rows.append([f"{service} ({addon.get('name')})", plan, "free", STATES.get(state, state)])
        for var in addon.get("config_vars") or []:
            rows.append([f" └─ as {str(var).removesuffix('_URL')}", "", "", ""])
    return [*table(rows, ["Add-on", "Plan", "Price", "State"]), ""]


def created_line(addon: Addon) -> str:
    """``Created redis-solid-31337 as REDIS_URL``."""
    variables = ", ".join(addon.get("config_vars") or [])
    name = addon.get("name")
    return f"Created {name} as {variables}" if variables else f"Created {name}"


def confirm_destroy(app: str, addon: str, confirm: str | None) -> None:
    """Go on only when ``confirm`` (or, at a terminal, what the user types) is the app's name.

    Raises UserError otherwise, saying that the data goes and how to confirm.
    """
    warning = (
        f"This destroys {addon} on {app_label(app)} and deletes all its data. "
        f"To proceed, type {app} or re-run this command with --confirm {app}."
    )
    if confirm is None and sys.stdin.isatty():
        click.echo(f" !    WARNING: Destructive Action\n !    {warning}\n", err=True)
        confirm = click.prompt(">", default="", show_default=False, err=True)
    if confirm != app:
        raise UserError(warning if confirm is None else f"Confirmation did not match {app}.")


@click.command()
@app_option
@click.option("--json", "as_json", is_flag=True, help="Print the add-ons as JSON.")
def addons_list(app: str | None, as_json: bool) -> None:
    """List the app's add-ons."""
    name = require_app(app)
    with connect() as api:
        addons = api.get(app_path(name, "addons")) or []
    if as_json:
        click.echo(json.dumps(addons, indent=2))
        return
    echo_lines(format_addons(name, addons))


@click.command()
@app_option
@click.option("--name", metavar="NAME", help="A name for the add-on (default: generated).")
@click.argument("service")
def addons_create(app: str | None, name: str | None, service: str) -> None:
    """Create an add-on: SERVICE is redis[:PLAN] (a managed redis-server of one of Heroku's
    plan sizes, mini by default; sets REDIS_URL) or heroku-postgresql[:PLAN] (a database of
    the server's Postgres, essential-0 by default; sets DATABASE_URL, or
    HEROKU_POSTGRESQL_<COLOR>_URL when the app has one)."""
    target = require_app(app)
    body: dict[str, object] = {"plan": service}
    if name:
        body["name"] = name
    with connect() as api, action(f"Creating {service} on {app_label(target)}"):
        addon = api.post(app_path(target, "addons"), body)
    click.echo(created_line(addon))


@click.command()
@app_option
@click.option("-c", "--confirm", metavar="APP", help="The app's name, to confirm.")
@click.argument("addon")
def addons_destroy(app: str | None, confirm: str | None, addon: str) -> None:
    """Destroy the add-on ADDON and delete its data; asks for the app's name first."""
    target = require_app(app)
    confirm_destroy(target, addon, confirm)
    with connect() as api, action(f"Destroying {addon} on {app_label(target)}"):
        api.delete(app_path(target, "addons", addon))


COMMANDS: dict[str, click.Command] = {
    "addons": addons_list,
    "addons:create": addons_create,
    "addons:destroy": addons_destroy,
}
