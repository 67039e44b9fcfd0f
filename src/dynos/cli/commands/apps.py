"""``apps``, ``apps:create``, ``apps:info``, ``apps:destroy`` and ``open``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object
from dynos.errors import UserError


def format_apps(apps: Sequence[Mapping[str, Any]]) -> list[str]:
    """``=== Apps`` then one name a line, sorted; a sentence when there are none."""
    if not apps:
        return ["You have no apps."]
    names = sorted(str(a.get("name", "")) for a in apps)
    return [header("Apps"), *names]


def dyno_counts(dynos: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Dynos per process type, in type order: ``{"web": 2, "worker": 1}``."""
    counts = Counter(str(d.get("type", "")) for d in dynos)
    return {t: counts[t] for t in sorted(counts)}


def format_app_info(app: Mapping[str, Any], dynos: Sequence[Mapping[str, Any]]) -> list[str]:
    """Heroku's ``apps:info`` block: ``=== name`` then aligned ``Key: value`` lines."""
    pairs: dict[str, object] = {}
    pairs["Web URL"] = app.get("web_url") or ""
    if app.get("git_url"):
        pairs["Git URL"] = app["git_url"]
    owner = app.get("owner")
    if isinstance(owner, Mapping) and owner.get("email"):
        pairs["Owner"] = owner["email"]
    pairs["Dynos"] = dyno_counts(dynos)
    for key, label in (("created_at", "Created At"), ("released_at", "Released At")):
        if app.get(key):
            pairs[label] = app[key]
    return [header(str(app.get("name", ""))), *styled_object(pairs)]


@click.command()
def apps_list() -> None:
    """List the apps."""
    with connect() as api:
        apps = api.get("/apps")
    echo_lines(format_apps(apps or []))


@click.command()
@click.argument("name", required=False)
def apps_create(name: str | None) -> None:
    """Create an app called NAME (without one, a name is made up, as Heroku does)."""
    with connect() as api, action(f"Creating {app_label(name) if name else 'app'}") as doing:
        app = api.post("/apps", {"name": name} if name else {})
        if not name and isinstance(app, dict):
            doing.done(f"done, {app_label(str(app.get('name')))}")
    if isinstance(app, dict) and app.get("web_url"):
        click.echo(app["web_url"])


@click.command()
@app_option
def apps_info(app: str | None) -> None:
    """Show an app's URL, dynos and release time."""
    name = require_app(app)
    with connect() as api:
        info = api.get(app_path(name))
        dynos = api.get(app_path(name, "dynos"))
    echo_lines(format_app_info(info, dynos or []))


def check_confirmation(app: str, confirm: str | None) -> None:
    """Raise UserError unless ``confirm`` repeats the app's name."""
    if confirm != app:
        raise UserError(
            f"This permanently destroys {app_label(app)}, its dynos and its releases. "
            f"To proceed, pass --confirm {app}."
        )


@click.command()
@click.argument("name", required=False)
@app_option
@click.option("--confirm", metavar="NAME", help="The app's name again, to confirm.")
def apps_destroy(name: str | None, app: str | None, confirm: str | None) -> None:
    """Destroy the app NAME: stop its dynos and remove its releases."""
    target = require_app(name or app)
    check_confirmation(target, confirm)
    with connect() as api, action(f"Destroying {app_label(target)}"):
        api.delete(app_path(target))


@click.command()
@app_option
def open_app(app: str | None) -> None:
    """Print the app's URL."""
    name = require_app(app)
    with connect() as api:
        info = api.get(app_path(name))
    click.echo(info.get("web_url", "") if isinstance(info, dict) else "")


COMMANDS: dict[str, click.Command] = {
    "apps": apps_list,
    "apps:create": apps_create,
    "apps:info": apps_info,
    "apps:destroy": apps_destroy,
    "open": open_app,
}
