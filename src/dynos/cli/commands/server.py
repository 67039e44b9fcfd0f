"""``server``: run the dynos server in the foreground; ``auth:token``: print the API token;
``server:backup`` and ``server:restore``: back up the server's database, and restore it.

Every ``server`` option can also come from the environment as ``DYNOS_<OPTION>``
(``DYNOS_API_PORT``, ``DYNOS_HOME``, ...). The server itself lives in :mod:`dynos.server`,
imported only when this command runs so that the rest of the CLI never depends on it; the
CLI's client (httpx) is imported by the commands that use it, not by ``server``'s start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dynos.config import HomePaths, ServerConfig, default_home
from dynos.core.containers import check_image_name
from dynos.errors import UserError

_DEFAULTS = ServerConfig(home=Path("."))
F = TypeVar("F", bound=Callable[..., Any])


PORT = click.IntRange(0, 65535)
SECONDS = click.FloatRange(min=0)


def _setting(name: str, kind: click.ParamType[Any] | None, help: str) -> Callable[[F], F]:
    """``--name`` for the ServerConfig field ``name``: its default, and ``DYNOS_<NAME>``."""
    field = name.replace("-", "_")
    return click.option(
        f"--{name}",
        field,
        envvar=f"DYNOS_{field.upper()}",
        type=kind,
        default=getattr(_DEFAULTS, field),
        show_default=True,
        help=help,
    )


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DYNOS_HOME",
    help="Where the server keeps its database, slugs and credentials "
    "(default: ~/.local/share/dynos; /var/lib/dynos for root).",
)
@_setting("api-host", None, "Address the API listens on.")
@_setting("api-port", PORT, "Port of the API.")
@_setting(
    "rendezvous-port",
    PORT,
    "Port where 'heroku run' attaches to one-off dynos (TLS, on the API's address).",
)
@_setting("router-host", None, "Address the router listens on.")
@_setting("router-port", PORT, "Port of the router (HTTP).")
@_setting(
    "https-port",
    PORT,
    "Port of the router's HTTPS side: TLS ends there, with certificates from the "
    "server's own CA ('dynos certs:ca') or the apps' own.",
)
@_setting(
    "router-processes",
    click.IntRange(min=1),
    "Router processes sharing the router's port (more only where cores are to spare).",
)
@_setting(
    "router-priority",
    click.IntRange(-20, 19),
    "Nice value of the server process, which routes requests (dynos run at 0); below 0 needs root.",
)
@_setting(
    "router-max-connections",
    click.IntRange(min=1),
    "Client connections the router holds at once; past it, 503 and close "
    "(default: from the file descriptor limit, leaving a reserve for the API and the dynos).",
)
@_setting(
    "router-max-connections-per-client",
    click.IntRange(min=1),
    "Client connections the router holds from one address (default: an eighth of the "
    "total, at least 64).",
)
@_setting("domain", None, "Apps are routed at <app>.<domain>.")
@_setting("stop-grace", SECONDS, "Seconds between SIGTERM and SIGKILL when a dyno stops.")
@_setting("boot-timeout", SECONDS, "Seconds a web dyno has to bind its $PORT.")
@_setting(
    "idle-after",
    SECONDS,
    "Seconds without a request before an app's lone 1X/eco web dyno idles (0: never). "
    "Apps may override it with 'dynos settings:set idle_after=N'.",
)
@_setting(
    "cycle-after",
    SECONDS,
    "Restart dynos that have run this many seconds, one at a time with draining "
    "(daily cycling: 86400). Off unless given.",
)
@_setting(
    "runtime-metrics-every",
    click.FloatRange(min=0.1),
    "Seconds between samples of each dyno's memory and load, for the metrics and the "
    "log-runtime-metrics lines (Heroku's 20).",
)
@_setting(
    "crash-backoff",
    SECONDS,
    "Seconds before the second restart of a crashing dyno; doubles on each crash.",
)
@_setting("crash-backoff-max", SECONDS, "The longest wait between restarts of a crashing dyno.")
@_setting(
    "backup-every",
    SECONDS,
    "Seconds between backups of the database into <home>/backups, taken when it changed "
    "(one is taken at start); 0 takes none.",
)
@_setting("backup-keep", click.IntRange(min=1), "How many of the scheduled backups are kept.")
@_setting(
    "build-timeout",
    click.FloatRange(min=0, min_open=True),
    "Seconds a build may take; then every process of it is killed and the deploy fails.",
)
@_setting(
    "release-timeout",
    click.FloatRange(min=0, min_open=True),
    "Seconds a release command (the Procfile's release:) may take; then it is stopped and "
    "its release fails.",
)
@_setting(
    "max-unpacked-size",
    click.IntRange(min=1),
    "MB an uploaded app directory may unpack to (checked as it unpacks).",
)
@_setting(
    "max-unpacked-files",
    click.IntRange(min=1),
    "Files, directories and links an uploaded app directory may hold.",
)
@_setting(
    "scratch-mb",
    click.IntRange(min=1),
    "Private scratch space (its own /tmp, /dev/shm ...) of a Standard-1X dyno, in MB; other "
    "sizes scale with their memory quota. As root only; it counts as the dyno's memory.",
)
@_setting(
    "pg-storage-cap-mb",
    click.IntRange(min=0),
    "Cap every Postgres database at this many MB when its plan allows more (a small disk); "
    "0: each plan's own cap.",
)
@_setting(
    "acme-directory",
    None,
    "ACME directory that automatic certificates (certs:auto:enable) come from; its HTTP-01 "
    "challenges reach the router's port, which must be port 80 for the apps' hosts.",
)
@_setting(
    "acme-ca-bundle",
    click.Path(exists=True, dir_okay=False, path_type=Path),
    "CA file to check the ACME directory's HTTPS with (default: the system's CAs); for a "
    "test directory such as pebble.",
)
@_setting("acme-email", None, "Contact address of the server's ACME account (optional).")
@_setting(
    "acme-renew-before",
    SECONDS,
    "Renew automatic certificates this many seconds before they expire (default: when a "
    "third of their lifetime is left, 30 days before at the latest).",
)
@_setting(
    "drain-buffer",
    click.IntRange(min=1, max=1_000_000),
    "Lines held per log drain while it is slow or down; past that, lines are dropped and an "
    "L10 line says how many.",
)
@click.option(
    "--drains-allow-loopback",
    "drains_allow_loopback",
    is_flag=True,
    envvar="DYNOS_DRAINS_ALLOW_LOOPBACK",
    help="Let log drains reach loopback and link-local addresses (refused by default: the "
    "server's own ports listen there); for tests and single-machine setups.",
)
@_setting(
    "backend",
    click.Choice(["local", "docker", "swarm"]),
    "What runs dynos: processes on this machine, containers on the local Docker engine (of a "
    "stack image: see --stack-image and 'dynos stack:build'), or services of a Docker Swarm "
    "whose manager the local engine is.",
)
@_setting(
    "stack-image",
    None,
    "With --backend docker or swarm: the image builds and dynos run in ('dynos stack:build' "
    "makes it).",
)
@_setting(
    "registry",
    None,
    "With --backend swarm: the registry (HOST:PORT) every node pulls release images from "
    "(default: the server runs Debian's docker-registry on 127.0.0.1:5000).",
)
def server(home: Path | None, **settings: Any) -> None:
    """Run the dynos server (API, router and dynos) until Ctrl-C or SIGTERM."""
    # Imported here: the rest of the CLI only talks to a server and need not load one.
    from dynos.server import serve

    home = home if home is not None else default_home()
    settings["cycle_after"] = settings["cycle_after"] or None  # 0 means off, as None does
    try:
        check_image_name(settings["stack_image"])
    except ValueError as exc:
        raise UserError(f"--stack-image: {exc}") from None
    config = ServerConfig(home=home.expanduser().resolve(), **settings)
    # serve() stops the dynos on SIGINT itself; a stray interrupt still ends quietly.
    with contextlib.suppress(KeyboardInterrupt):
        serve(config)


HOME_OPTION = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="The server home (default: DYNOS_HOME, else ~/.local/share/dynos; /var/lib/dynos "
    "for root).",
)


def _paths(home: Path | None) -> HomePaths:
    from dynos.cli.client import home_from_env
    from dynos.cli.session import current_state

    return HomePaths((home or home_from_env(current_state().env)).expanduser().resolve())


@click.command("server:backup")
@HOME_OPTION
def server_backup(home: Path | None) -> None:
    """Back up the server's database now, into <home>/backups (a server may be running)."""
    from dynos.store.backups import backup_home

    paths = _paths(home)
    try:
        target = backup_home(paths.database, paths.backups)
    except OSError as exc:
        raise UserError(f"Cannot back up {paths.database}: {exc}.") from exc
    click.echo(f"Backed up {paths.database} to {target}")


@click.command("server:restore")
@click.argument("backup", type=click.Path(dir_okay=False, path_type=Path))
@HOME_OPTION
def server_restore(backup: Path, home: Path | None) -> None:
    """Replace the server's database with BACKUP (a file of <home>/backups); no server may
    run on the home meanwhile. The replaced database is kept beside it."""
    from dynos.home_lock import hold_home
    from dynos.store.backups import restore

    paths = _paths(home)
    if not paths.home.is_dir():
        raise UserError(f"There is no server home at {paths.home}: pass the right --home.")
    try:
        with hold_home(paths, "stop the server (Ctrl-C or SIGTERM), then restore."):
            aside = restore(backup.expanduser().resolve(), paths.database)
    except OSError as exc:
        raise UserError(f"Cannot restore {paths.database}: {exc}.") from exc
    kept = f"; the database it replaced is kept as {aside}" if aside else ""
    click.echo(f"Restored {paths.database} from {backup}{kept}. Start the server again.")


@click.command("auth:token")
def auth_token() -> None:
    """Print the API token (from DYNOS_API_KEY or the server home's credentials)."""
    from dynos.cli.client import home_from_env, read_token
    from dynos.cli.session import current_state

    env = current_state().env
    token = env.get("DYNOS_API_KEY")
    if not token:
        credentials = HomePaths(home_from_env(env)).credentials
        token = read_token(credentials)
        if not token:
            raise UserError(
                f"No API token in {credentials}: start a server with 'dynos server' "
                "or set DYNOS_API_KEY."
            )
    click.echo(token)


COMMANDS: dict[str, click.Command] = {
    "server": server,
    "server:backup": server_backup,
    "server:restore": server_restore,
    "auth:token": auth_token,
}
