"""``run`` and ``run:detached``: one-off dynos.

``dynos run CMD`` creates an attached one-off dyno and connects this terminal to it over the
dyno's attach WebSocket (``attach_websocket_url``, docs/api.md): stdin goes to the dyno (in
raw mode when stdin is a TTY, restored on exit), its stdout and stderr come back as they are
written, and the command's exit status becomes ours. ``run:detached`` starts it and says where
the output goes: the app's logs. Status lines go to stderr so that stdout carries only the
command's output, as with Heroku's.

As with ``heroku run``, the command's own options anywhere before a ``--`` are the command's
(``dynos run python manage.py migrate -a myapp``); after ``--`` every word is the dyno
command's (``dynos run -a myapp -- ls -a``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

import click
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from dynos.cli.commands.logs import stream_logs
from dynos.cli.session import app_option, app_path, require_app
from dynos.cli.session import connect as connect_api
from dynos.cli.style import app_label
from dynos.errors import DynosError, UserError

STDERR_CHANNEL = 2


def build_command(args: Sequence[str]) -> str:
    """One argument is the command line as it is (``dynos run "rake test"``); several are
    quoted for the shell (``dynos run echo "a b"`` runs ``echo 'a b'``)."""
    if len(args) == 1:
        return args[0]
    return shlex.join(args)


def hoist_options(args: Sequence[str], options: Mapping[str, bool]) -> list[str]:
    """``args`` as click should parse them: the ``options`` found anywhere before the first
    ``--`` (name: whether it takes a value; ``--app=x`` and ``-ax`` forms too) first, then
    ``--``, then the command's words in their order, ``--`` removed."""
    hoisted: list[str] = []
    words: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            words += args[index + 1 :]
            break
        if arg.startswith("--"):
            name, attached = arg.split("=", 1)[0], "=" in arg
        else:
            name, attached = arg[:2], len(arg) > 2
        if arg.startswith("-") and name in options:
            hoisted.append(arg)
            if options[name] and not attached and index + 1 < len(args):
                index += 1
                hoisted.append(args[index])
        else:
            words.append(arg)
        index += 1
    return [*hoisted, "--", *words]


class RunCommand(click.Command):
    """A command whose options may also follow its COMMAND words, as ``heroku run``'s."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    options[name] = not param.is_flag
        return super().parse_args(ctx, hoist_options(args, options))


def parse_env(values: Sequence[str]) -> dict[str, str]:
    """``-e K=V`` options (each may hold several, separated by ``;``, as Heroku's) as a dict.

    Raises UserError for an entry without ``=`` or a name.
    """
    env: dict[str, str] = {}
    for value in values:
        for item in value.split(";"):
            if not item.strip():
                continue
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise UserError(f"{item!r} is invalid: use -e KEY=value, e.g. -e DEBUG=1.")
            env[key.strip()] = val
    return env


def dyno_label(dyno: Mapping[str, Any]) -> str:
    """``run.1234 (Standard-1X)``: the dyno and its size, as Heroku's action lines end."""
    size = dyno.get("size")
    return f"{dyno.get('name')} ({size})" if size else str(dyno.get("name"))


def _request(
    command: str, size: str | None, env: dict[str, str], attach: bool, with_tty: bool
) -> dict[str, object]:
    body: dict[str, object] = {"command": command, "attach": attach, "env": env}
    if size:
        body["size"] = size
    if attach:
        body["force_no_tty"] = not with_tty
    return body


@click.command(cls=RunCommand)
@app_option
@click.option("-s", "--size", metavar="SIZE", help="Dyno size (default Standard-1X).")
@click.option(
    "-e", "--env", "env", multiple=True, metavar="K=V", help="Add an environment variable."
)
@click.option("--no-tty", is_flag=True, help="Use pipes even when stdin is a terminal.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED, metavar="COMMAND...")
def run(
    app: str | None, size: str | None, env: tuple[str, ...], no_tty: bool, args: tuple[str, ...]
) -> None:
    """Run COMMAND in a one-off dyno attached to this terminal; exit with its status.

    Options may come before or after COMMAND; put -- before a COMMAND whose own options
    are also ours (dynos run -a APP -- ls -a)."""
    variables = parse_env(env)
    name = require_app(app)
    command = build_command(args)
    with_tty = not no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    if os.environ.get("TERM"):
        variables.setdefault("TERM", os.environ["TERM"])
    if with_tty:
        columns, lines = shutil.get_terminal_size()
        variables.setdefault("COLUMNS", str(columns))
        variables.setdefault("LINES", str(lines))
    click.echo(f"Running {command} on {app_label(name)}...", nl=False, err=True)
    try:
        with connect_api() as api:
            body = _request(command, size, variables, True, with_tty)
            dyno = api.post(app_path(name, "dynos"), body)
        # The WebSocket, not attach_url (the heroku CLI's rendezvous): it keeps stderr apart,
        # follows the window's size and needs no trust in the platform's CA.
        url = dyno.get("attach_websocket_url") if isinstance(dyno, dict) else None
        if not isinstance(url, str):
            raise DynosError(
                "the dynos server did not return an attach_websocket_url for the dyno: "
                "is it older than this CLI?"
            )
        socket = _open(url)
    except BaseException:
        click.echo(" !", err=True)
        raise
    click.echo(f" up, {dyno_label(dyno)}", err=True)
    with socket:
        try:
            status = attach_terminal(socket, with_tty)
        except KeyboardInterrupt:  # pipes only (a TTY sends ^C to the dyno): it is hung up
            status = 130
    click.get_current_context().exit(status)


@click.command(cls=RunCommand)
@app_option
@click.option("-s", "--size", metavar="SIZE", help="Dyno size (default Standard-1X).")
@click.option(
    "-e", "--env", "env", multiple=True, metavar="K=V", help="Add an environment variable."
)
@click.option("-t", "--tail", is_flag=True, help="Follow the dyno's logs until Ctrl-C.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED, metavar="COMMAND...")
def run_detached(
    app: str | None, size: str | None, env: tuple[str, ...], tail: bool, args: tuple[str, ...]
) -> None:
    """Run COMMAND in a one-off dyno whose output goes to the app's logs (options as run's)."""
    variables = parse_env(env)
    name = require_app(app)
    command = build_command(args)
    with connect_api() as api:
        click.echo(f"Running {command} on {app_label(name)}...", nl=False)
        try:
            body = _request(command, size, variables, False, False)
            dyno = api.post(app_path(name, "dynos"), body)
        except BaseException:
            click.echo(" !")
            raise
        click.echo(f" done, {dyno_label(dyno)}")
        if not tail:
            click.echo(f"Run dynos logs -a {name} --dyno {dyno.get('name')} to view the output.")
            return
        with contextlib.suppress(KeyboardInterrupt):
            stream_logs(api, name, {"lines": 100, "tail": True, "dyno": dyno.get("name")})


def _open(url: str) -> ClientConnection:
    """The attach WebSocket; a connection that fails becomes a DynosError."""
    try:
        return connect(url, proxy=None, compression=None, open_timeout=30)
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        raise DynosError(f"could not attach to the dyno at {url.split('?')[0]}: {exc}") from exc


def attach_terminal(socket: ClientConnection, with_tty: bool) -> int:
    """Carry stdin to the dyno and its output to stdout/stderr until it exits; return its
    exit status. With a TTY, the terminal is in raw mode meanwhile (keystrokes, ^C included,
    go to the dyno) and window size changes are sent along."""
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if with_tty else None
    previous_winch: Any = None
    try:
        if with_tty:
            tty.setraw(stdin)

            def send_size(signum: int, frame: FrameType | None) -> None:
                columns, lines = shutil.get_terminal_size()
                with contextlib.suppress(ConnectionClosed):
                    socket.send(json.dumps({"resize": [columns, lines]}))

            previous_winch = signal.signal(signal.SIGWINCH, send_size)
        threading.Thread(target=_forward_stdin, args=(socket, stdin), daemon=True).start()
        return _receive(socket)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if previous_winch is not None:
            signal.signal(signal.SIGWINCH, previous_winch)


def _forward_stdin(socket: ClientConnection, stdin: int) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        while data := os.read(stdin, 65536):
            socket.send(data)
        socket.send(json.dumps({"eof": True}))


def _receive(socket: ClientConnection) -> int:
    """Write the dyno's output where it belongs until its exit status comes."""
    try:
        for message in socket:
            if isinstance(message, bytes):
                fd = 2 if message[:1] == bytes([STDERR_CHANNEL]) else 1
                _write_all(fd, message[1:])
                continue
            control = json.loads(message)
            if "exit" in control:
                return int(control["exit"])
            if "error" in control:
                raise DynosError(str(control["error"].get("message", control["error"])))
    except ConnectionClosed as exc:
        raise DynosError(f"lost the connection to the dyno: {exc}") from exc
    raise DynosError("the connection to the dyno closed before it said its exit status")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


COMMANDS: dict[str, click.Command] = {"run": run, "run:detached": run_detached}
