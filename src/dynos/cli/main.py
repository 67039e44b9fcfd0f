"""The ``dynos`` command: the click group, and the one place errors become exit codes.

A :class:`~dynos.errors.DynosError` leaving any command is printed as one line, ``dynos:
<message>``, on stderr, and the exit status is 1. Transport failures arrive here already
typed: ``cli/client.py`` is the one place httpx errors become DynosErrors. Nothing a user can
cause prints a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any

import click

from dynos.errors import DynosError


def fail(message: str) -> None:
    """Print ``dynos: message`` on stderr, on one line."""
    one_line = " ".join(message.split())
    click.echo(f"dynos: {one_line}", err=True)


# Each command's module, by the command's name: a command's module (and what it imports:
# httpx, websockets...) is loaded when that command runs, as click's docs show for a "lazy
# group", so one command does not pay for the others' imports (about 0.1 s of CPU a call).
# tests/cli/test_cli_commands.py checks this table against each module's COMMANDS.
COMMANDS_BY_MODULE = {
    "addons": ("addons", "addons:create", "addons:destroy"),
    "apps": ("apps", "apps:create", "apps:info", "apps:destroy", "open"),
    "autoscale": ("ps:autoscale", "ps:autoscale:enable", "ps:autoscale:disable"),
    "certs": ("certs", "certs:add", "certs:info", "certs:remove", "certs:ca"),
    "certs_auto": ("certs:auto", "certs:auto:enable", "certs:auto:disable", "certs:auto:refresh"),
    "config": ("config", "config:get", "config:set", "config:unset"),
    "deploy": ("deploy",),
    "domains": (
        *("domains", "domains:add", "domains:update", "domains:remove", "domains:info"),
        "domains:clear",
    ),
    "drains": ("drains", "drains:add", "drains:remove"),
    "features": (
        *("features", "features:info", "features:enable", "features:disable"),
        *("labs", "labs:enable", "labs:disable"),
    ),
    "git": ("git:remote", "git:credentials"),
    "logs": ("logs",),
    "metrics": ("metrics",),
    "pg": (
        *("pg:info", "pg:psql", "pg:backups", "pg:backups:capture", "pg:backups:restore"),
        "pg:backups:download",
    ),
    "ps": ("ps", "ps:scale", "ps:type", "ps:resize", "ps:restart", "restart", "ps:stop", "sizes"),
    "releases": ("releases", "releases:output"),
    "run": ("run", "run:detached"),
    "server": ("server", "server:backup", "server:restore", "auth:token"),
    "settings": ("settings", "settings:set", "settings:unset"),
    "stack": ("stack:build",),
    "up": ("up",),
}
COMMAND_MODULES = {name: module for module, names in COMMANDS_BY_MODULE.items() for name in names}


def command_module(name: str) -> Any:
    """The module under ``dynos.cli.commands`` whose COMMANDS hold ``name``, imported."""
    return importlib.import_module(f"dynos.cli.commands.{COMMAND_MODULES[name]}")


class DynosGroup(click.Group):
    """A click group whose invoke turns dynos errors into ``dynos: message`` and exit 1, and
    whose commands are loaded when asked for (``COMMAND_MODULES``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMAND_MODULES:
            return super().get_command(ctx, cmd_name)
        command: click.Command = command_module(cmd_name).COMMANDS[cmd_name]
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests close names from ``self.commands`` only (8.2+; 8.1 none), which a
        # lazy group leaves empty: the suggestion is made here, from the whole table.
        name = args[0]
        unknown = not name.startswith("-") and self.get_command(ctx, name) is None
        if unknown and not ctx.resilient_parsing:
            ctx.fail(no_such_command(name, self.list_commands(ctx)))
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynosError as exc:
            fail(exc.message)
        except BrokenPipeError:
            # `dynos logs | head`: the reader left; stop quietly, as other Unix tools do.
            _silence_stdout()
            ctx.exit(0)
        ctx.exit(1)


def no_such_command(name: str, commands: list[str]) -> str:
    """click's own words for a mistyped command, with the close names it would suggest."""
    close = sorted(difflib.get_close_matches(name, commands))
    message = f"No such command {name!r}."
    if len(close) == 1:
        return f"{message} Did you mean {close[0]!r}?"
    if close:
        return f"{message} (Did you mean one of: {', '.join(map(repr, close))}?)"
    return message


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(cls=DynosGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="dynos", prog_name="dynos")
def cli() -> None:
    """dynos: run Procfile apps as dynos, the Heroku way, on your own machine.

    Choose the app with -a APP or the DYNOS_APP environment variable. The CLI finds the
    server through DYNOS_API_URL and DYNOS_API_KEY, else through the server home
    (DYNOS_HOME, default ~/.local/share/dynos).
    """


def main() -> None:
    """The console script entry point."""
    cli(prog_name="dynos")
