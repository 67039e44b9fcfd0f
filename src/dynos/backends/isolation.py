"""Isolation between apps when the server runs as root: one unprivileged user per app.

A dyno runs as its app's user, in a release directory its group may read but not write; the
server's home (database, credentials, other apps' slugs) is closed to it. The Python that
dynos and builds use must then be reachable by every user: the server's own interpreter may
live under a private home (pyenv under /root), in which case the system's python3 is used.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dynos.errors import PlatformError, UserError


@dataclass(frozen=True)
class DynoUser:
    name: str
    uid: int
    gid: int


def isolation_available() -> bool:
    return os.geteuid() == 0


def app_user(app_id: str) -> DynoUser:
    """The app's own system user (``dyno-<id prefix>``), created the first time."""
    name = "dyno-" + app_id.replace("-", "")[:12]
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        command = ["useradd", "--system", "--user-group", "--no-create-home"]
        command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode not in (0, 9):  # 9: created meanwhile by another server
            message = f"Could not create the user {name}: {result.stderr.strip()}"
            raise PlatformError(message) from None
        entry = pwd.getpwnam(name)
    return DynoUser(name, entry.pw_uid, entry.pw_gid)


def close_home(home: Path) -> None:
    """Other users may pass through the home to a slug, but list and read nothing else.

    Raises UserError when a directory above the home is closed to other users: dynos could
    not reach their code.
    """
    for parent in home.resolve().parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise UserError(
                f"The home {home} is inside {parent}, which other users cannot enter; dynos "
                "run as their app's own user and must reach their code. Use a home such as "
                "/var/lib/dynos (--home or DYNOS_HOME)."
            )
    home.chmod(0o711)
    (home / "slugs").chmod(0o711)


def open_slug_to(path: Path, user: DynoUser) -> None:
    """Give the app's group read access to its slug, and nobody else any access."""
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            _share_with_group(Path(root) / name, user.gid)
    _share_with_group(path, user.gid)


def _share_with_group(path: Path, gid: int) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        os.lchown(path, 0, gid)
        return
    os.chown(path, 0, gid)
    mode = info.st_mode & 0o700
    group = (mode >> 3) & 0o050  # read, and execute where the owner may: never write
    os.chmod(path, mode | group)


def runtime_python(isolated: bool) -> str:
    """The python3 that dynos and builds use: the server's own unless others can't reach it."""
    if not isolated or _world_reachable(Path(sys.executable)):
        return sys.executable
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if system is None:
        raise PlatformError(
            f"{sys.executable} is not readable by dyno users and no system python3 exists: "
            "install python3 (apt-get install python3 python3-venv)."
        )
    return system


def _world_reachable(path: Path) -> bool:
    resolved = path.resolve()
    for parent in resolved.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(resolved.stat().st_mode & stat.S_IXOTH)
