"""The git credential helper (cli/git_credentials.py): the token for this platform's git
host, nothing for any other host or operation, without the CLI's imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dynos.cli.git_credentials import answer

GET = "protocol=https\nhost=git.localhost:5443\n\n"


def home_with(tmp_path: Path, domain: str = "localhost") -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "credentials").write_text("the-token\n")
    (home / "server.json").write_text(json.dumps({"domain": domain}))
    return home


def test_get_for_the_git_host_answers_the_token_as_the_password(tmp_path: Path) -> None:
    home = home_with(tmp_path)
    assert answer("get", GET, {"DYNOS_HOME": str(home)}, None) == (
        "username=dynos\npassword=the-token\n"
    )
    # A home named on the command line wins over the environment's key and home.
    env = {"DYNOS_API_KEY": "other", "DYNOS_HOME": "/nonexistent"}
    assert "password=the-token" in answer("get", GET, env, home)
    # Without one, DYNOS_API_KEY is the token, as for every command.
    assert "password=other" in answer("get", GET, {**env, "DYNOS_HOME": str(home)}, None)


def test_other_hosts_operations_and_a_home_without_token_get_nothing(tmp_path: Path) -> None:
    home = home_with(tmp_path, domain="example.org")
    env = {"DYNOS_HOME": str(home)}
    assert answer("get", GET, env, None) == ""  # git.localhost is not this server's
    assert answer("get", "host=git.example.org\n", env, None).endswith("password=the-token\n")
    for operation in ("store", "erase"):
        assert answer(operation, "host=git.example.org\npassword=x\n", env, None) == ""
    (home / "credentials").unlink()
    assert answer("get", "host=git.example.org\n", env, None) == ""


def test_run_on_its_own_it_loads_nothing_of_the_cli(tmp_path: Path) -> None:
    home = home_with(tmp_path)
    code = (
        f"import sys, runpy; sys.argv = ['x', '--home', {str(home)!r}, 'get'];"
        f"import io; sys.stdin = io.StringIO({GET!r})\n"
        "try: runpy.run_module('dynos.cli.git_credentials', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dynos', 'click', 'httpx'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "password=the-token" in result.stdout
    assert "'click'" not in result.stdout and "'httpx'" not in result.stdout
    assert "dynos.cli.main" not in result.stdout
