"""``releases``: an app's releases, newest first, in Heroku's layout."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import echo_lines, format_since, header, parse_time, table

Release = Mapping[str, Any]

# Heroku marks a release whose release phase has not finished, or failed.
_STATUS_NOTES = {"pending": "release command executing", "failed": "release command failed"}


def _version(release: Release) -> int:
    version = release.get("version")
    return version if isinstance(version, int) else 0


def current_version(releases: Sequence[Release]) -> int | None:
    """The release marked ``current``, else the highest version; None without releases."""
    for release in releases:
        if release.get("current") is True:
            return _version(release)
    return max((_version(r) for r in releases), default=None)


def _created(release: Release, now: datetime, tz: tzinfo | None) -> str:
    stamp = release.get("created_at")
    if not isinstance(stamp, str):
        return ""
    try:
        return format_since(parse_time(stamp), now, tz)
    except ValueError:
        return stamp


def _description(release: Release) -> str:
    text = str(release.get("description") or "")
    note = _STATUS_NOTES.get(str(release.get("status")))
    return f"{text} {note}" if note else text


def _user(release: Release) -> str:
    user = release.get("user")
    return str(user.get("email") or "") if isinstance(user, Mapping) else ""


def format_releases(
    app: str,
    releases: Sequence[Release],
    now: datetime,
    tz: tzinfo | None = None,
    limit: int = 15,
) -> list[str]:
    """``=== app Releases - Current: v3`` then ``v3  description  user  date`` lines, newest
    first, at most ``limit`` of them. ``releases`` come oldest first, as the API sends them.
    """
    if not releases:
        return [f"{app} has no releases."]
    title = f"{app} Releases"
    current = current_version(releases)
    if current is not None:
        title += f" - Current: v{current}"
    newest = sorted(releases, key=_version, reverse=True)[:limit]
    with_user = any(_user(r) for r in newest)  # no empty column when no release has a user
    rows = [
        [f"v{_version(r)}", _description(r)]
        + ([_user(r)] if with_user else [])
        + [_created(r, now, tz)]
        for r in newest
    ]
    return [header(title), *table(rows)]


@click.command()
@app_option
@click.option(
    "-n",
    "--num",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="How many releases to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the releases as JSON.")
def releases_list(app: str | None, num: int, as_json: bool) -> None:
    """List the app's releases, newest first."""
    name = require_app(app)
    with connect() as api:
        releases: list[Release] = api.get(app_path(name, "releases")) or []
    if as_json:
        newest = sorted(releases, key=_version, reverse=True)[:num]
        click.echo(json.dumps(newest, indent=2))
        return
    echo_lines(format_releases(name, releases, datetime.now(UTC), limit=num))


COMMANDS: dict[str, click.Command] = {"releases": releases_list}
