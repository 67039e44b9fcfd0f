"""The real heroku CLI's ``git:remote`` makes a remote that deploys on dynos.

With ``HEROKU_GIT_HOST`` naming the router's git host and HTTPS port, ``heroku git:remote -a
APP`` sets the remote ``heroku`` to ``https://$HEROKU_GIT_HOST/APP.git`` and installs ``heroku
git:credentials`` as git's credential helper for that host (in the global git config of the
test's HOME), which answers with ``HEROKU_API_KEY``: the real git client then pushes, trusting
the platform CA through ``GIT_SSL_CAINFO``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer
from tests.heroku.conftest import Heroku

pytestmark = pytest.mark.timeout(600)  # the first test may wait for the CLI's npm install


def test_heroku_git_remote_makes_a_remote_that_pushes_and_deploys(
    heroku: Heroku, server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("herokugit")
    git_host = f"git.localhost:{server.https_port}"
    env = {
        **heroku.env,
        "HEROKU_GIT_HOST": git_host,
        # git runs the helper the CLI installs ("!heroku git:credentials") through the shell.
        "PATH": f"{heroku.bin.parent}{os.pathsep}{heroku.env['PATH']}",
        "GIT_SSL_CAINFO": str(server.ca),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    work = tmp_path / "work"
    work.mkdir()
    (work / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    (work / "index.html").write_text("pushed with the heroku CLI's remote\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    for step in (("git", "init", "-q", "-b", "main"), ("git", "add", "-A")):
        assert run(*step).returncode == 0
    assert run("git", "commit", "-q", "-m", "first").returncode == 0
    remote = run(str(heroku.bin), "git:remote", "-a", "herokugit")
    assert remote.returncode == 0, remote.stderr
    url = f"https://{git_host}/herokugit.git"
    assert url in remote.stdout  # "set git remote heroku to https://git.localhost:N/herokugit.git"
    assert run("git", "remote", "get-url", "heroku").stdout.strip() == url
    helper = run("git", "config", "--global", f"credential.https://{git_host}.helper")
    assert helper.stdout.strip() == "!heroku git:credentials"

    pushed = run("git", "push", "heroku", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert "remote:        Released v2" in pushed.stderr
    assert "* [new branch]      main -> main" in pushed.stderr
    with server.api() as api:
        releases = api.get("/apps/herokugit/releases").json()
    assert [r["version"] for r in releases] == [1, 2]
