"""``up [DIR]``: one command from an app directory to running dynos, then its logs.

It starts ``python -m dynos server`` as a child process on free ports with its own home
(a temporary one unless ``--home`` is given), creates the app, deploys DIR, scales every
process type (web=2, others=1), waits for the dynos to come up, prints the URL and ``ps``,
and follows the logs. Ctrl-C, SIGTERM or any error stops the server (which stops every
dyno) before ``up`` exits: the child runs in its own session, so only ``up`` signals it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from dynos.cli.client import ApiClient, ApiError, ServerInfo, locate_server
from dynos.cli.commands.deploy import deploy_directory
from dynos.cli.commands.logs import log_session_body, stream_logs
from dynos.cli.commands.ps import format_now_running, format_ps
from dynos.cli.session import app_path, current_state
from dynos.cli.style import action, app_label, echo_lines
from dynos.errors import DynosError, UserError

SERVER_START_TIMEOUT = 15.0
DYNOS_UP_TIMEOUT = 30.0
# The server gives dynos --stop-grace (30 s by default) after SIGTERM; then a margin.
SERVER_STOP_TIMEOUT = 45.0
POLL_INTERVAL = 0.2
READY_STATES = frozenset({"up", "idle"})


def app_name_for(directory: Path) -> str:
    """An app name from a directory name: lowercase, ``[a-z0-9-]``, starting with a letter,
    at most 30 characters (Heroku's rule); ``app-...`` when too little is left.
    """
    name = re.sub(r"[^a-z0-9]+", "-", directory.name.lower())
    name = re.sub(r"^[^a-z]+", "", name)[:30].strip("-")
    if len(name) < 3:
        name = f"app-{name}".strip("-")
    return name


def scale_plan(formation: Sequence[Mapping[str, Any]]) -> list[dict[str, object]]:
    """Formation updates for ``up``: web=2, every other process type=1."""
    return [
        {"type": f.get("type"), "quantity": 2 if f.get("type") == "web" else 1} for f in formation
    ]


def ready_count(dynos: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for d in dynos if d.get("state") in READY_STATES)


def log_tail(path: Path, lines: int = 20) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


class ServerFailed(DynosError):
    """The child server exited or never answered; ``log_lines`` is the end of its log."""

    def __init__(self, message: str, log_path: Path) -> None:
        super().__init__(message)
        self.log_path = log_path
        self.log_lines = log_tail(log_path)


class ServerProcess:
    """The child ``dynos server``: started, watched, and always stopped."""

    def __init__(self, home: Path, api_port: int, router_port: int) -> None:
        self.home = home
        self.router_port = router_port
        self.log_path = home / "server.log"
        command = [
            sys.executable, "-m", "dynos", "server",
            "--home", str(home),
            "--api-port", str(api_port),
            "--router-port", str(router_port),
            "--rendezvous-port", "0",  # a private server: a free port, in its server.json
            "--https-port", "0",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only `up`, which stops the server
            )

    def exited(self) -> int | None:
        return self.proc.poll()

    def fail(self, message: str) -> ServerFailed:
        return ServerFailed(message, self.log_path)

    def wait_until_ready(self, timeout: float = SERVER_START_TIMEOUT) -> ServerInfo:
        """Wait for this server's ``server.json`` and for its API to answer.

        Raises DynosError when the server exits or does not answer within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.exited()
            if status is not None:
                raise self.fail(f"the dynos server exited with status {status} while starting")
            try:
                info = locate_server(home=self.home)
                if info.pid is None or info.pid == self.proc.pid:
                    with ApiClient(info.api_url, info.token) as api:
                        api.get("/apps")
                    return info
            except DynosError:
                pass  # not written yet, half written, or not listening yet
            time.sleep(POLL_INTERVAL)
        raise self.fail(f"the dynos server did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = SERVER_STOP_TIMEOUT) -> None:
        """SIGTERM the server and wait for it to stop its dynos; SIGKILL after ``timeout``
        or on a second Ctrl-C.
        """
        if self.exited() is not None:
            return
        self.proc.terminate()
        deadline = time.monotonic() + timeout
        warned = False
        while True:
            try:
                self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                return
            except subprocess.TimeoutExpired:
                break
            except KeyboardInterrupt:
                if warned:
                    break
                warned = True
                click.echo("Stopping dynos; press Ctrl-C again to kill the server.", err=True)
        self.proc.kill()
        self.proc.wait()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends `up` the way Ctrl-C does: by stopping the server


def ensure_app(api: ApiClient, app: str) -> None:
    """Create ``app`` unless it exists."""
    try:
        api.get(app_path(app))
    except ApiError as exc:
        if exc.status != 404:
            raise
        with action(f"Creating {app_label(app)}"):
            api.post("/apps", {"name": app})


def scale_up(api: ApiClient, app: str) -> int:
    """Scale web to 2 and every other process type to 1; return how many dynos that is."""
    formation = api.get(app_path(app, "formation")) or []
    updates = scale_plan(formation)
    if not updates:
        return 0
    with action("Scaling dynos") as progress:
        updated = api.patch(app_path(app, "formation"), {"updates": updates}) or []
        progress.done(format_now_running(updated, [str(u["type"]) for u in updates]))
    return sum(int(f.get("quantity", 0)) for f in updated)


def wait_for_dynos(api: ApiClient, app: str, total: int) -> list[Mapping[str, Any]]:
    """Poll ``ps`` until ``total`` dynos are up (or DYNOS_UP_TIMEOUT passes); return them."""
    deadline = time.monotonic() + DYNOS_UP_TIMEOUT
    with action("Waiting for dynos to start") as progress:
        while True:
            dynos: list[Mapping[str, Any]] = api.get(app_path(app, "dynos")) or []
            if ready_count(dynos) >= total:
                return dynos
            if time.monotonic() >= deadline:
                progress.done(f"{ready_count(dynos)} of {total} up after {DYNOS_UP_TIMEOUT:.0f} s")
                return dynos
            time.sleep(POLL_INTERVAL)


def run_app(server: ServerProcess, root: Path, app: str) -> None:
    with action(f"Starting the dynos server (home {server.home})"):
        info = server.wait_until_ready()
    with ApiClient(info.api_url, info.token, transport=current_state().transport) as api:
        ensure_app(api, app)
        release = deploy_directory(api, app, root, click.echo)
        click.echo(f"Released v{release.get('version')}")
        dynos = wait_for_dynos(api, app, scale_up(api, app))
        port = info.router_port or server.router_port
        host = f"{app}.{info.domain or 'localhost'}"
        url = f"http://{host}:{port}/"
        if info.https_port:  # trusting the server's CA: `curl --cacert <home>/tls/ca.pem`
            url += f" and https://{host}:{info.https_port}/"
        click.echo(f"\n{app_label(app)} is running at {url}")
        click.echo(
            f"The dashboard is at {info.api_url}/ (its token is the first line of "
            f"{server.home / 'credentials'})\n"
        )
        echo_lines(format_ps(app, dynos, datetime.now(UTC)))
        click.echo("Following the logs (Ctrl-C stops the app and the server):")
        body = log_session_body(100, True)
        while True:
            try:
                stream_logs(api, app, body)
            except DynosError:
                if server.exited() is None:
                    raise
            status = server.exited()
            if status is not None:
                raise server.fail(f"the dynos server stopped (status {status})")
            body = log_session_body(0, True)  # the session ended early: follow again
            time.sleep(1.0)


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-a", "--app", "app", metavar="NAME", help="The app's name (default: the directory's name)."
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="The server's home (default: a temporary directory, removed afterwards).",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port of the API (default 0: a free one).",
)
@click.option(
    "--router-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port of the router (default 0: a free one).",
)
def up(
    directory: Path, app: str | None, home: Path | None, api_port: int, router_port: int
) -> None:
    """Run the app in DIRECTORY on a private server until Ctrl-C."""
    root = directory.resolve()
    if not root.is_dir():
        raise UserError(f"{directory} is not a directory: pass the app's directory.")
    name = app or app_name_for(root)
    owned_home = home is None
    server_home = Path(tempfile.mkdtemp(prefix="dynos-up-")) if home is None else home.resolve()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server: ServerProcess | None = None
    try:
        server_home.mkdir(parents=True, exist_ok=True)
        # Port 0 lets the server bind free ports itself; server.json then names them.
        server = ServerProcess(server_home, api_port, router_port)
        run_app(server, root, name)
    except KeyboardInterrupt:
        click.echo("")
    except ServerFailed as exc:
        if exc.log_lines:  # the one clue there is; the temporary home goes away below
            click.echo(f"--- last lines of {exc.log_path} ---", err=True)
            echo_lines(exc.log_lines, err=True)
        raise
    finally:
        if server is not None:
            with action("Stopping the dynos server"):
                server.stop()
        signal.signal(signal.SIGTERM, previous)
        if owned_home:
            shutil.rmtree(server_home, ignore_errors=True)


COMMANDS: dict[str, click.Command] = {"up": up}
