"""``logs``: an app's recent log lines, and with ``--tail`` the new ones as they come.

A log session is created through the API (``POST /apps/{app}/log-sessions``); its
``logplex_url`` then streams Heroku-format lines as plain text, without the token.
"""

from __future__ import annotations

import click

from dynos.cli.client import REQUEST_TIMEOUT, ApiClient
from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.errors import DynosError

DEFAULT_LINES = 100


def log_session_body(
    lines: int,
    tail: bool,
    *,
    dyno: str | None = None,
    process_type: str | None = None,
    source: str | None = None,
) -> dict[str, object]:
    """The log-session request: ``-d DYNO`` and ``-p TYPE`` both filter on ``dyno``."""
    body: dict[str, object] = {"lines": lines, "tail": tail}
    which = dyno or process_type
    if which:
        body["dyno"] = which
    if source:
        body["source"] = source
    return body


def stream_logs(api: ApiClient, app: str, body: dict[str, object]) -> None:
    """Create a log session and print its lines until the stream ends.

    Raises DynosError when the session cannot be created or the stream breaks.
    KeyboardInterrupt passes through: callers decide what Ctrl-C means.
    """
    session = api.post(app_path(app, "log-sessions"), body)
    url = session.get("logplex_url") if isinstance(session, dict) else None
    if not isinstance(url, str) or not url:
        raise DynosError("the dynos server did not return a logplex_url for the log session")
    # A tail may be silent for hours; a one-shot read should not hang forever.
    read_timeout = None if body.get("tail") else REQUEST_TIMEOUT
    for line in api.stream_text(url, read_timeout=read_timeout):
        click.echo(line)


@click.command()
@app_option
@click.option(
    "-n",
    "--num",
    type=click.IntRange(min=0),
    default=DEFAULT_LINES,
    show_default=True,
    help="How many recent lines to show.",
)
@click.option("-t", "--tail", is_flag=True, help="Keep streaming new lines until Ctrl-C.")
@click.option("-p", "--ps", "process_type", metavar="TYPE", help="Only this process type.")
@click.option("-d", "--dyno", metavar="DYNO", help="Only this dyno (web.1), type (web) or router.")
@click.option(
    "-s", "--source", metavar="SOURCE", help="Only this source: app or heroku (also: dynos)."
)
def logs(
    app: str | None,
    num: int,
    tail: bool,
    process_type: str | None,
    dyno: str | None,
    source: str | None,
) -> None:
    """Show the app's logs (dyno output, router and platform lines)."""
    name = require_app(app)
    body = log_session_body(num, tail, dyno=dyno, process_type=process_type, source=source)
    try:
        with connect() as api:
            stream_logs(api, name, body)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a tail ends: exit 0, no traceback


COMMANDS: dict[str, click.Command] = {"logs": logs}
