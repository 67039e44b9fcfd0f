"""``drains``, ``drains:add``, ``drains:remove``: an app's log drains (the Platform API's
log-drains), in the heroku CLI's words and output.

A drain receives every log line of the app: ``https://`` and ``http://`` drains as POSTs in
Heroku's logplex format, ``syslog://`` and ``syslog+tls://`` drains as RFC 5424 messages over
TCP. Its token (``d.<uuid>``) names it in what it receives.
"""

from __future__ import annotations

import json
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import echo_lines, header


def format_drains(drains: list[dict[str, Any]]) -> list[str]:
    if not drains:
        return []
    return [header("Drains"), *(f"{d['url']} ({d['token']})" for d in drains)]


@click.command()
@app_option
@click.option("--json", "as_json", is_flag=True, help="Output in JSON format.")
def drains_list(app: str | None, as_json: bool) -> None:
    """List the app's log drains: each URL and its token."""
    name = require_app(app)
    with connect() as api:
        drains = api.get(app_path(name, "log-drains")) or []
    if as_json:
        click.echo(json.dumps(drains, indent=2))
    else:
        echo_lines(format_drains(drains))


@click.command()
@app_option
@click.argument("url")
def drains_add(app: str | None, url: str) -> None:
    """Add a log drain: https://..., http://..., syslog://HOST:PORT or syslog+tls://HOST:PORT."""
    name = require_app(app)
    with connect() as api:
        drain = api.post(app_path(name, "log-drains"), {"url": url}) or {}
    click.echo(f"Successfully added drain {drain.get('url', url)}")


@click.command()
@app_option
@click.argument("url_or_token")
def drains_remove(app: str | None, url_or_token: str) -> None:
    """Remove a log drain, named by its URL or its token."""
    name = require_app(app)
    with connect() as api:
        drain = api.delete(app_path(name, "log-drains", url_or_token)) or {}
    click.echo(f"Successfully removed drain {drain.get('url', url_or_token)}")


COMMANDS: dict[str, click.Command] = {
    "drains": drains_list,
    "drains:add": drains_add,
    "drains:remove": drains_remove,
}
