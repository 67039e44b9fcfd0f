"""The ``dynos`` command: the click group, and the one place errors become exit codes.

A :class:`~dynos.errors.DynosError` leaving any command is printed as one line, ``dynos:
<message>``, on stderr, and the exit status is 1. Transport failures arrive here already
typed: ``cli/client.py`` is the one place httpx errors become DynosErrors. Nothing a user can
cause prints a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dynos.cli.commands import (
    addons,
    apps,
    autoscale,
    certs,
    certs_auto,
    config,
    deploy,
    domains,
    drains,
    features,
    git,
    logs,
    metrics,
    pg,
    ps,
    releases,
    run,
    server,
    settings,
    stack,
    up,
)
from dynos.errors import DynosError


def fail(message: str) -> None:
    """Print ``dynos: message`` on stderr, on one line."""
    one_line = " ".join(message.split())
    click.echo(f"dynos: {one_line}", err=True)


class DynosGroup(click.Group):
    """A click group whose invoke turns dynos errors into ``dynos: message`` and exit 1."""

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


for _module in (
    *(addons, apps, autoscale, certs, certs_auto, config, deploy, domains, features, git),
    *(drains, logs, metrics, pg),
    *(ps, releases, run, server, settings, stack, up),
):
    for _name, _command in _module.COMMANDS.items():
        cli.add_command(_command, name=_name)


def main() -> None:
    """The console script entry point."""
    cli(prog_name="dynos")
