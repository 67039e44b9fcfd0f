"""``pg:*``: the app's Postgres databases (the ``heroku-postgresql`` add-on), as Heroku's CLI
has them: ``pg:info``, ``pg:psql``, ``pg:backups``, ``pg:backups:capture``,
``pg:backups:restore`` and ``pg:backups:download``.

DATABASE, where a command takes one, is what ``addons:info`` takes (``DATABASE``,
``DATABASE_URL``, ``HEROKU_POSTGRESQL_PINK``, the add-on's name); without it, the app's
``DATABASE_URL``. ``pg:psql`` runs the local ``psql`` with the database's credentials (the
password in its environment, never on its command line), so it works where the cluster's
loopback address is this machine's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click

from dynos.cli.commands.addons import confirm_destroy
from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object, table
from dynos.errors import UserError

JSON = Mapping[str, Any]
DEFAULT_DATABASE = "DATABASE_URL"


def human_size(size: int) -> str:
    """``7.5 MB``, ``1 GB``: as Heroku's pg:info prints sizes."""
    value, unit = float(size), "bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    if unit == "bytes":
        return f"{int(value)} bytes"
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


def format_info(info: JSON) -> list[str]:
    """One database's ``pg:info`` block."""
    size, cap = int(info["data_size"]), int(info["storage_cap"])
    share = f"{100 * size / cap:.2f}%" if cap else "?"
    return [
        header(str(info["config_var"])),
        *styled_object(
            {
                "Plan": info["plan"]["display_name"],
                "Status": info["status"],
                "Connections": f"{info['connections']}/{info['connection_limit']}",
                "PG Version": info["postgres_version"],
                "Created": info["created_at"],
                "Data Size": f"{human_size(size)} / {human_size(cap)} ({share})",
                "Tables": info["tables"],
                "Add-on": info["addon"]["name"],
            }
        ),
        "",
    ]


def format_backups(app: str, backups: Sequence[JSON]) -> list[str]:
    if not backups:
        return [header(f"Backups of {app}"), "", "No backups. Capture one with pg:backups:capture."]
    rows = [
        [
            str(b["id"]),
            str(b["created_at"]),
            str(b["status"]),
            human_size(int(b["size"])),
            str(b["database"]),
        ]
        for b in reversed(backups)
    ]
    headings = ["ID", "Created at", "Status", "Size", "Database"]
    return [header(f"Backups of {app}"), "", *table(rows, headings), ""]


def psql_command(psql: str, url: str, sql: str | None) -> tuple[list[str], dict[str, str]]:
    """The psql command line and the environment it needs for ``url``: every credential in
    the environment (a command line is visible to every user), SSL required as on Heroku."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise UserError("The database's URL is not a postgres:// URL: is it a Postgres add-on?")
    env = {
        "PGHOST": parts.hostname,
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": unquote(parts.path.lstrip("/")),
        "PGSSLMODE": "require",
    }
    argv = [psql, "-X"] if sql is None else [psql, "-X", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return argv, env


def _database(app: str, database: str | None, *parts: str) -> str:
    """The path of the add-on DATABASE names (the app's DATABASE_URL when None), and of
    ``parts`` below it, each escaped."""
    return app_path(app, "addons", database or DEFAULT_DATABASE, *parts)


database_argument = click.argument("database", required=False)


@click.command()
@app_option
@database_argument
def pg_info(app: str | None, database: str | None) -> None:
    """Show the app's Postgres databases (or DATABASE): plan, status, size, connections."""
    name = require_app(app)
    with connect() as api:
        if database is None:
            addons = [
                a
                for a in api.get(app_path(name, "addons")) or []
                if (a.get("addon_service") or {}).get("name") == "heroku-postgresql"
            ]
            if not addons:
                raise UserError(
                    f"{name} has no Postgres database: create one with "
                    f"dynos addons:create heroku-postgresql -a {name}."
                )
            paths = [app_path(name, "addons", str(a["name"])) for a in addons]
        else:
            paths = [_database(name, database)]
        for path in paths:
            echo_lines(format_info(api.get(f"{path}/postgres")))


@click.command()
@app_option
@click.option("-c", "--command", "sql", metavar="SQL", help="Run SQL and exit.")
@database_argument
def pg_psql(app: str | None, sql: str | None, database: str | None) -> None:
    """Open psql on the app's database (or DATABASE), or run SQL with -c."""
    name = require_app(app)
    psql = shutil.which("psql")
    if psql is None:
        raise UserError(
            "psql is not installed here: install it (apt-get install postgresql-client)."
        )
    with connect() as api:
        addon = api.get(_database(name, database))
        config = api.get(app_path(name, "config-vars")) or {}
    var = (addon.get("config_vars") or [DEFAULT_DATABASE])[0]
    url = config.get(var)
    if not url:
        raise UserError(f"{var} is not set on {name}: is {addon.get('name')} attached?")
    argv, env = psql_command(psql, url, sql)
    click.echo(f"--> Connecting to {addon.get('name')}", err=True)
    os.execve(psql, argv, {**os.environ, **env})


@click.command()
@app_option
@database_argument
def pg_backups(app: str | None, database: str | None) -> None:
    """List the backups of the app's database (or DATABASE)."""
    name = require_app(app)
    with connect() as api:
        backups = api.get(f"{_database(name, database)}/backups") or []
    echo_lines(format_backups(name, backups))


@click.command()
@app_option
@database_argument
def pg_backups_capture(app: str | None, database: str | None) -> None:
    """Back up the app's database (or DATABASE) now, with pg_dump."""
    name = require_app(app)
    with connect() as api, action(f"Backing up {database or 'DATABASE'} on {app_label(name)}"):
        backup = api.post(f"{_database(name, database)}/backups")
    click.echo(f"Backup {backup['id']} done ({human_size(int(backup['size']))}).")


@click.command()
@app_option
@click.option("-c", "--confirm", metavar="APP", help="The app's name, to confirm.")
@click.argument("backup", required=False)
@database_argument
def pg_backups_restore(
    app: str | None, confirm: str | None, backup: str | None, database: str | None
) -> None:
    """Restore BACKUP (b001; the latest by default) into the app's database (or DATABASE),
    replacing what it holds; asks for the app's name first."""
    name = require_app(app)
    target = database or "DATABASE"
    confirm_destroy(name, target, confirm)
    path = _database(name, database, "backups", backup or "latest")
    with connect() as api, action(f"Restoring {backup or 'the latest backup'} into {target}"):
        api.post(f"{path}/restore", {"confirm": name})


@click.command()
@app_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("latest.dump"),
    show_default=True,
    help="Where to write it.",
)
@click.argument("backup", required=False)
@database_argument
def pg_backups_download(
    app: str | None, output: Path, backup: str | None, database: str | None
) -> None:
    """Download BACKUP (the latest by default) of the app's database: a pg_dump
    custom-format file, for pg_restore."""
    name = require_app(app)
    path = _database(name, database, "backups", backup or "latest", "download")
    with connect() as api, action(f"Downloading {backup or 'the latest backup'} to {output}"):
        api.download(path, output)


COMMANDS: dict[str, click.Command] = {
    "pg:info": pg_info,
    "pg:psql": pg_psql,
    "pg:backups": pg_backups,
    "pg:backups:capture": pg_backups_capture,
    "pg:backups:restore": pg_backups_restore,
    "pg:backups:download": pg_backups_download,
}
