"""``server``: run the dynos server in the foreground; ``auth:token``: print the API token.

Every ``server`` option can also come from the environment as ``DYNOS_<OPTION>``
(``DYNOS_API_PORT``, ``DYNOS_HOME``, ...). The server itself lives in :mod:`dynos.server`,
imported only when this command runs so that the rest of the CLI never depends on it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

import click

from dynos.cli.client import home_from_env, read_token
from dynos.cli.session import current_state
from dynos.config import HomePaths, ServerConfig
from dynos.errors import DynosError, UserError

_DEFAULTS = ServerConfig(home=Path("."))


def build_config(
    *,
    home: Path | None,
    api_host: str,
    api_port: int,
    router_host: str,
    router_port: int,
    domain: str,
    stop_grace: float,
    boot_timeout: float,
    idle_after: float = _DEFAULTS.idle_after,
    cycle_after: float | None = None,
    crash_backoff: float = _DEFAULTS.crash_backoff,
    crash_backoff_max: float = _DEFAULTS.crash_backoff_max,
) -> ServerConfig:
    """The ServerConfig for the ``server`` options; a missing home is the default home."""
    return ServerConfig(
        home=(home if home is not None else home_from_env(os.environ)).expanduser().resolve(),
        api_host=api_host,
        api_port=api_port,
        router_host=router_host,
        router_port=router_port,
        domain=domain,
        stop_grace=stop_grace,
        boot_timeout=boot_timeout,
        idle_after=idle_after,
        cycle_after=cycle_after or None,
        crash_backoff=crash_backoff,
        crash_backoff_max=crash_backoff_max,
    )


PORT = click.IntRange(0, 65535)
SECONDS = click.FloatRange(min=0)


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DYNOS_HOME",
    help="Where the server keeps its database, slugs and credentials "
    "(default: ~/.local/share/dynos).",
)
@click.option(
    "--api-host",
    envvar="DYNOS_API_HOST",
    default=_DEFAULTS.api_host,
    show_default=True,
    help="Address the API listens on.",
)
@click.option(
    "--api-port",
    envvar="DYNOS_API_PORT",
    type=PORT,
    default=_DEFAULTS.api_port,
    show_default=True,
    help="Port of the API.",
)
@click.option(
    "--router-host",
    envvar="DYNOS_ROUTER_HOST",
    default=_DEFAULTS.router_host,
    show_default=True,
    help="Address the router listens on.",
)
@click.option(
    "--router-port",
    envvar="DYNOS_ROUTER_PORT",
    type=PORT,
    default=_DEFAULTS.router_port,
    show_default=True,
    help="Port of the router.",
)
@click.option(
    "--domain",
    envvar="DYNOS_DOMAIN",
    default=_DEFAULTS.domain,
    show_default=True,
    help="Apps are routed at <app>.<domain>.",
)
@click.option(
    "--stop-grace",
    envvar="DYNOS_STOP_GRACE",
    type=SECONDS,
    default=_DEFAULTS.stop_grace,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when a dyno stops.",
)
@click.option(
    "--boot-timeout",
    envvar="DYNOS_BOOT_TIMEOUT",
    type=SECONDS,
    default=_DEFAULTS.boot_timeout,
    show_default=True,
    help="Seconds a web dyno has to bind its $PORT.",
)
@click.option(
    "--idle-after",
    envvar="DYNOS_IDLE_AFTER",
    type=SECONDS,
    default=_DEFAULTS.idle_after,
    show_default=True,
    help="Seconds without a request before an app's lone 1X/eco web dyno idles (0: never). "
    "Apps may override it with 'dynos settings:set idle_after=N'.",
)
@click.option(
    "--cycle-after",
    envvar="DYNOS_CYCLE_AFTER",
    type=SECONDS,
    default=0,
    help="Restart dynos that have run this many seconds, one at a time with draining "
    "(daily cycling: 86400). Off by default.",
)
@click.option(
    "--crash-backoff",
    envvar="DYNOS_CRASH_BACKOFF",
    type=SECONDS,
    default=_DEFAULTS.crash_backoff,
    show_default=True,
    help="Seconds before the second restart of a crashing dyno; doubles on each crash.",
)
@click.option(
    "--crash-backoff-max",
    envvar="DYNOS_CRASH_BACKOFF_MAX",
    type=SECONDS,
    default=_DEFAULTS.crash_backoff_max,
    show_default=True,
    help="The longest wait between restarts of a crashing dyno.",
)
def server(
    home: Path | None,
    api_host: str,
    api_port: int,
    router_host: str,
    router_port: int,
    domain: str,
    stop_grace: float,
    boot_timeout: float,
    idle_after: float,
    cycle_after: float,
    crash_backoff: float,
    crash_backoff_max: float,
) -> None:
    """Run the dynos server (API, router and dynos) until Ctrl-C or SIGTERM."""
    config = build_config(
        home=home,
        api_host=api_host,
        api_port=api_port,
        router_host=router_host,
        router_port=router_port,
        domain=domain,
        stop_grace=stop_grace,
        boot_timeout=boot_timeout,
        idle_after=idle_after,
        cycle_after=cycle_after,
        crash_backoff=crash_backoff,
        crash_backoff_max=crash_backoff_max,
    )
    try:
        # Imported here, by name: the CLI must work on a machine that only talks to a server.
        server_module = importlib.import_module("dynos.server")
    except ModuleNotFoundError as exc:
        if exc.name != "dynos.server":
            raise
        raise DynosError("this dynos installation has no server (dynos.server is missing)") from exc
    # serve() stops the dynos on SIGINT itself; a stray interrupt still ends quietly.
    with contextlib.suppress(KeyboardInterrupt):
        server_module.serve(config)


@click.command("auth:token")
def auth_token() -> None:
    """Print the API token (from DYNOS_API_KEY or the server home's credentials)."""
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


COMMANDS: dict[str, click.Command] = {"server": server, "auth:token": auth_token}
