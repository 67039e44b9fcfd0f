"""Isolation between apps when the server runs as root: one unprivileged user per app.

A dyno runs as its app's user, in its own writable view of a release directory its group
may read (appdir.py; the release itself stays as built); the server's home (database,
credentials, other apps' slugs) is closed to it. The Python that dynos and builds use must
then be reachable by every user: the server's own interpreter may live under a private home
(pyenv under /root), in which case the system's python3 is used.

App users are system accounts (``useradd --system``: some programs, libpq for one, need a
passwd entry for their uid), and system uids and gids are few (about 900). So a server keeps
only the users it needs: each is tagged with the server's home in its comment field, and
removed when its app is destroyed or that server stops, or, for a server that was killed, by
the next server to start (on the same home, or on any home once that home is gone). A later
user may get the same uid and gid, so before a user goes what it could reach is taken back:
every file it owns, wherever it could have left one (mounts.files_owned_by walks every
filesystem, not a list of places), is deleted, as a dyno's filesystem is on Heroku when it
restarts; and the slugs are closed again (group root). A user some of whose files cannot be
deleted is kept, with its uid, and tried again at the next start. ``open_slug_to`` opens a
slug to its app's current group before its first dyno starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from dynos.backends.mounts import files_owned_by
from dynos.errors import PlatformError, UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DynoUser:
    name: str
    uid: int
    gid: int


def isolation_available() -> bool:
    return os.geteuid() == 0


USER_PREFIX = "dyno-"
COMMENT_PREFIX = "dynos "  # then the home of the server that made the user


class AppUsers:
    """The system users of one server's apps: made on demand, removed when no longer used."""

    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        # Quoted: a passwd field cannot hold ":" or a newline.
        self._comment = COMMENT_PREFIX + quote(str(self.home), safe="/")

    def for_app(self, app_id: str) -> DynoUser:
        """The app's own system user (``dyno-<id prefix>``), created the first time."""
        return self._user(user_name(app_id))

    def for_addon(self, addon_name: str) -> DynoUser:
        """An add-on server's own system user (``dyno-addon-<hash of home and name>``), created
        the first time: not its app's, so that the app's dynos can neither signal nor read it,
        nor another server's add-on of the same name. Removed with the app users (same prefix
        and comment)."""
        digest = hashlib.sha256(f"{self.home}\0{addon_name}".encode()).hexdigest()[:12]
        return self._user(f"{USER_PREFIX}addon-{digest}")

    def _user(self, name: str) -> DynoUser:
        entry = _passwd_entry(name)
        if entry is None:
            command = ["useradd", "--system", "--user-group", "--no-create-home"]
            command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"]
            command += ["--comment", self._comment, name]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            # 9: the name is taken, by a server that made this user meanwhile (or by a group
            # of that name alone, which the lookup tells apart).
            entry = _passwd_entry(name) if result.returncode in (0, 9) else None
            if entry is None:
                message = f"Could not create the user {name}: {result.stderr.strip()}"
                raise PlatformError(message)
        return DynoUser(name, entry.pw_uid, entry.pw_gid)

    def remove_stale(self) -> int:
        """At start: remove the users left by servers that were killed, on this home (no dyno
        of it runs any more) or on a home that is gone. Returns how many were removed."""
        return self._remove(lambda home: home == str(self.home) or not Path(home).exists())

    def remove_all(self) -> int:
        """At stop, once every dyno has: remove this server's users."""
        return self._remove(lambda home: home == str(self.home))

    def remove_app(self, app_id: str) -> bool:
        """The app was destroyed and none of its dynos runs: remove its user, if this
        server made it. Returns whether a user was removed."""
        entry = _passwd_entry(user_name(app_id))
        if entry is None or entry.pw_gecos != self._comment:
            return False
        return self._remove_users([entry]) == 1

    def _remove(self, stale: Callable[[str], bool]) -> int:
        users = [
            entry
            for entry in pwd.getpwall()
            if entry.pw_name.startswith(USER_PREFIX)
            and entry.pw_gecos.startswith(COMMENT_PREFIX)
            and stale(unquote(entry.pw_gecos.removeprefix(COMMENT_PREFIX)))
        ]
        close_slugs(self.home / "slugs")  # before any gid of them can be given out again
        return self._remove_users(users)

    def _remove_users(self, users: list[pwd.struct_passwd]) -> int:
        if not users:
            return 0
        running = _uids_running({entry.pw_uid for entry in users})
        for entry in users:
            if entry.pw_uid in running:
                log.warning("could not remove the user %s yet: it still runs", entry.pw_name)
        users = [entry for entry in users if entry.pw_uid not in running]
        remaining = remove_files_of({e.pw_uid for e in users}, {e.pw_gid for e in users})
        removed = 0
        for entry in users:
            left = [str(path) for path, uid in remaining if uid == entry.pw_uid]
            if left:  # its uid must not go to another app while these remain
                log.warning(
                    "kept the user %s (uid %d): it still owns %s; delete %s, and the next "
                    "server start removes the user",
                    entry.pw_name,
                    entry.pw_uid,
                    ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else ""),
                    "them" if len(left) > 1 else "it",
                )
                continue
            # Fails (and the user stays, to be removed later) while a process still runs as it.
            result = subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)
            if result.returncode != 0:
                said = result.stderr.decode(errors="replace").strip()
                log.warning("could not remove the user %s yet: %s", entry.pw_name, said)
            removed += result.returncode == 0
        return removed


def user_name(app_id: str) -> str:
    return USER_PREFIX + app_id.replace("-", "")[:12]


def _uids_running(uids: set[int]) -> set[int]:
    """Which of ``uids`` a live process runs as (their files are not theirs to lose yet); an
    exited one that its parent has yet to reap does not count, as for userdel."""
    running: set[int] = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                uid = entry.stat().st_uid
                if uid in uids and not _is_zombie(Path(entry.path, "stat").read_bytes()):
                    running.add(uid)
    return running


def _is_zombie(stat: bytes) -> bool:
    return stat[stat.rindex(b")") + 2 :].startswith(b"Z")


def _passwd_entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def close_slugs(slugs: Path) -> None:
    """Close every slug to all but root: its directory goes back to group root."""
    with contextlib.suppress(FileNotFoundError):
        for slug in list(slugs.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                if slug.is_dir() and not slug.is_symlink():
                    os.chown(slug, 0, 0)


def remove_files_of(uids: set[int], gids: Iterable[int] = ()) -> list[tuple[Path, int]]:
    """Delete every file users ``uids`` (of groups ``gids``) own where they could reach it,
    on every filesystem (a directory of theirs with all it holds). Returns what could not
    be deleted, with its owner's uid."""
    remaining: list[tuple[Path, int]] = []
    for path in files_owned_by(uids, set(gids)):
        try:
            info = path.lstat()
        except OSError:  # gone meanwhile
            continue
        try:
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            remaining.append((path, info.st_uid))
    # A directory's removal may have failed part way: what is still there stays reported.
    return [(path, uid) for path, uid in remaining if os.path.lexists(path)]


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
    """Give the app's group access to its slug, and nobody else any access.

    The group may write where the owner may: a dyno reaches its release only through its
    overlay (appdir.py), which copies what it changes into the dyno's own scratch, and whose
    permission checks are the release's modes; every release is bound read-only in the
    dyno's namespace, so the release itself never changes."""
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
    group = (mode >> 3) & 0o070  # what the owner may (read, write, execute)
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
