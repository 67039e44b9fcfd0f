"""``git:remote``: a git remote that deploys the app with ``git push dynos main``, and the
hidden ``git:credentials``, the git credential helper it installs.

``git:remote -a APP`` runs in the app's repository: it adds (or points) the remote
``dynos`` at the app's ``git_url`` (``https://git.<domain>:<port>/APP.git``, from the API),
makes git trust the platform's CA for that host (``http.<url>.sslCAInfo``) and makes
``dynos git:credentials`` git's only credential helper for it, all in the repository's own
config. The helper answers git's ``get`` with the API token as the password (any user name
does, as on Heroku) and ignores ``store`` and ``erase``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click

from dynos.cli.client import home_from_env
from dynos.cli.git_credentials import answer
from dynos.cli.session import app_option, app_path, connect, current_state, require_app
from dynos.config import HomePaths
from dynos.errors import UserError


def git(*args: str) -> str:
    """``git args`` in the current directory: its output; UserError with what git said."""
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise UserError("git is not installed: install it to deploy with git push.") from exc
    if result.returncode != 0:
        said = result.stderr.strip().splitlines()
        raise UserError(f"git {args[0]} failed: {said[-1] if said else result.returncode}")
    return result.stdout.strip()


def host_url(git_url: str) -> str:
    """``https://git.localhost:5443`` from ``https://git.localhost:5443/APP.git``: what git's
    per-URL config of the remote's host matches."""
    parts = urlsplit(git_url)
    return f"{parts.scheme}://{parts.netloc}"


def helper_command(env: Mapping[str, str]) -> str:
    """The helper as git's config runs it (``!`` runs it through the shell): what ``dynos
    git:credentials`` answers, without the CLI's start (cli/git_credentials.py), with this
    Python, and the server home the remote was made for when one was named."""
    words = [sys.executable, "-m", "dynos.cli.git_credentials"]
    if env.get("DYNOS_HOME"):
        words += ["--home", str(home_from_env(env))]
    return "!" + shlex.join(words)


def platform_ca(env: Mapping[str, str]) -> Path | None:
    """The platform CA's certificate in the server home (``<home>/tls/ca.pem``, what
    ``dynos certs:ca`` prints), if this machine has it."""
    ca = HomePaths(home_from_env(env)).tls / "ca.pem"
    return ca if ca.is_file() else None


@click.command("git:remote")
@app_option
@click.option("-r", "--remote", default="dynos", show_default=True, help="The remote's name.")
def git_remote(app: str | None, remote: str) -> None:
    """Add a git remote that deploys the app on `git push REMOTE main`."""
    name = require_app(app)
    env = current_state().env
    with connect() as api:
        info = api.get(app_path(name))
    url = info.get("git_url") if isinstance(info, dict) else None
    if not isinstance(url, str) or not url:
        raise UserError("This dynos server has no git service: deploy with 'dynos deploy'.")
    git("rev-parse", "--git-dir")  # in a repository, or say so
    remotes = git("remote").split()
    git("remote", "set-url" if remote in remotes else "add", remote, url)
    host = host_url(url)
    ca = platform_ca(env)
    if ca is not None:
        git("config", f"http.{host}/.sslCAInfo", str(ca))
        overriding = [name for name in ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH") if env.get(name)]
        if overriding:
            # git lets these variables win over any config: pushes would not trust the CA.
            click.echo(
                f"Warning: {' and '.join(overriding)} set in this environment override the "
                f"remote's CA for git: unset them to push, or add {ca} to the bundle they name.",
                err=True,
            )
    else:
        click.echo(
            "The platform CA is not in this machine's server home: copy the file 'dynos "
            f"certs:ca' prints on the server, then: git config http.{host}/.sslCAInfo FILE",
            err=True,
        )
    key = f"credential.{host}.helper"
    # An empty helper first: the helpers of the user's global config are not asked.
    git("config", "--replace-all", key, "")
    git("config", "--add", key, helper_command(env))
    click.echo(f"set git remote {remote} to {url}")


@click.command("git:credentials", hidden=True)
@click.argument("operation")
@click.option("--home", type=click.Path(path_type=Path), default=None, hidden=True)
def git_credentials(operation: str, home: Path | None) -> None:
    """git's credential helper for the platform's git server (git runs it)."""
    click.echo(answer(operation, sys.stdin.read(), current_state().env, home), nl=False)


COMMANDS: dict[str, click.Command] = {
    "git:remote": git_remote,
    "git:credentials": git_credentials,
}
