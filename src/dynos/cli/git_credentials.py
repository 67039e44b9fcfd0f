"""git's credential helper for the platform's git server: ``dynos git:credentials get``.

git runs its helper on every push that is asked for credentials (after the first ``401``),
so the helper that ``dynos git:remote`` installs is this module run on its own (``python -m
dynos.cli.git_credentials``): the standard library only, none of the CLI's imports, a few
hundredths of a second instead of the CLI's start. ``dynos git:credentials`` answers the
same (cli/commands/git.py).

Protocol (git-credential(1)): git writes ``key=value`` lines and a blank line; for ``get``
the helper answers ``username=`` and ``password=`` lines, or nothing to let git ask its next
helper. ``store`` and ``erase`` are ignored: the token is not git's to keep or forget.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

GIT_USER = "dynos"  # any name does: the token is the password


def read_request(text: str) -> dict[str, str]:
    """git's ``key=value`` lines, up to a blank line."""
    asked: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition("=")
        if sep:
            asked[key] = value
    return asked


def home_of(env: Mapping[str, str], home: Path | None) -> Path:
    """The server home: ``home`` if given, else ``$DYNOS_HOME``, else the default one (as
    config.default_home says it, without importing it)."""
    if home is not None:
        return home
    if env.get("DYNOS_HOME"):
        return Path(env["DYNOS_HOME"])
    if os.geteuid() == 0:
        return Path("/var/lib/dynos")
    return Path.home() / ".local" / "share" / "dynos"


def answer(operation: str, request: str, env: Mapping[str, str], home: Path | None) -> str:
    """What the helper prints for ``operation``: the token for a ``get`` about this
    platform's git host, else nothing."""
    if operation != "get":
        return ""
    asked = read_request(request)
    where = home_of(env, home)
    domain = _server_domain(where)
    host = asked.get("host", "").split(":")[0]
    if domain is not None and host != f"git.{domain}":
        return ""  # not this platform's git server: git asks its next helper
    token = (None if home is not None else env.get("DYNOS_API_KEY")) or _token(where)
    if not token:
        return ""
    return f"username={GIT_USER}\npassword={token}\n"


def _server_domain(home: Path) -> str | None:
    for name in ("server.json", "server.last.json"):
        try:
            info = json.loads((home / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        domain = info.get("domain") if isinstance(info, dict) else None
        if isinstance(domain, str):
            return domain
    return None


def _token(home: Path) -> str | None:
    try:
        lines = (home / "credentials").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return lines[0].strip() if lines and lines[0].strip() else None


def main(argv: list[str]) -> int:
    """``git_credentials [--home DIR] OPERATION``, as git runs it."""
    home = None
    if len(argv) >= 2 and argv[0] == "--home":
        home, argv = Path(argv[1]), argv[2:]
    if len(argv) != 1:
        print("usage: python -m dynos.cli.git_credentials [--home DIR] get", file=sys.stderr)
        return 2
    sys.stdout.write(answer(argv[0], sys.stdin.read(), os.environ, home))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
