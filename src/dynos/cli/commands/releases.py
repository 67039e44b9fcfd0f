"""``releases``: an app's releases, newest first, in Heroku's layout; ``releases:output``:
what a release's release command printed (live while it runs)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import click

from dynos.cli.client import ApiClient
from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import echo_lines, format_since, header, parse_time, table
from dynos.errors import DynosError

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


def print_release_output(api: ApiClient, release: Release) -> bool:
    """Print a release's release command output, following it while the command runs, as
    the heroku CLI does (from ``output_stream_url``). False when it has none."""
    url = release.get("output_stream_url")
    if not isinstance(url, str) or not url:
        return False
    for line in api.stream_text(url, read_timeout=None):
        click.echo(line)
    return True


@click.command()
@app_option
@click.argument("release", required=False)
def releases_output(app: str | None, release: str | None) -> None:
    """Show the output of RELEASE's release command (default: the newest release); while
    the command runs, follow it until it ends."""
    name = require_app(app)
    with connect() as api:
        if release is None:
            releases: list[Release] = api.get(app_path(name, "releases")) or []
            if not releases:
                raise DynosError(f"{name} has no releases.")
            chosen = max(releases, key=_version)
        else:
            chosen = api.get(app_path(name, "releases", release))
        if not print_release_output(api, chosen):
            click.echo(
                f"Release v{_version(chosen)} has no release command output: only a release "
                "of a Procfile with a 'release:' line has one.",
                err=True,
            )


COMMANDS: dict[str, click.Command] = {
    "releases": releases_list,
    "releases:output": releases_output,
}
