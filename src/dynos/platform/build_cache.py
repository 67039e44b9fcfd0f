"""An app's build cache, ``<home>/build-cache/<app id>``: its last environment and uv's cache.

``venv/`` is the virtualenv of the app's last build and ``key.json`` what it was built from
(:func:`dynos.core.python_build.cache_key`); a build whose key is the same starts from it
and installs nothing. ``uv/`` is uv's own download and wheel cache, which any build of the
app uses, as Heroku keeps pip's. Both are root's between builds (so they outlive the app's
user, which a server removes when it stops, and no later owner of its uid can read them);
``uv/`` is handed to the app's user for its build only. The environment moves into the new
slug and a copy of it comes back once the slug is released (in the background: a client does
not wait for it, the app's next build does); never a link, since a slug is never changed once
a release uses it, and the cache must not change with it.

The copy is made in ``partial/`` (root's, 0700: nobody else reaches it while it is made) and
sealed there (:func:`dynos.platform.ownership.seal`): root's, read-only to others, whatever
the slug's files had become meanwhile (a dyno's start opens them to the app's group). So the
environment a build restores is one nobody but root could have changed since it was sealed;
``venv.json`` says whether the build that made it sealed it right after uv's install (then
only uv wrote it, from the key's dependencies, and a build with the same key needs neither
uv nor write access to it) and how many bytes its files hold.

A build that finds ``uv/`` empty (the app's first) downloads into a uv cache of its own, in
the new ``.venv`` while uv runs (on the environment's mount), and uv links the environment's
files to it rather than copying them (each package is written once, not twice). Such a
cache cannot become ``uv/`` as it is: the next build hands ``uv/`` to the app's user, and
with it the released slug's files. So it is moved out of the user's reach as soon as uv's
processes are gone (:meth:`take_in`: a rename into ``incoming/``, root's, 0700), and copied
into ``uv/`` by root in the background (:meth:`keep_downloads`, before the environment's
copy): new files, root's, shared with no slug.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dynos.backends.isolation import DynoUser
from dynos.platform.ownership import hand_over, seal, take_back

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    """What a restored environment is known to be."""

    sealed: bool  # sealed right after uv's install: it is exactly what uv made of the key
    bytes: int | None  # its files' size, when known


class BuildCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.uv = root / "uv"
        self._key_file = root / "key.json"
        self._facts_file = root / "venv.json"
        self._incoming = root / "incoming"  # a first build's own uv cache, until kept

    def key(self) -> dict[str, str] | None:
        """What the cached environment was built from; None when there is none."""
        if not self.venv.is_dir():
            return None
        try:
            key = json.loads(self._key_file.read_text())
        except (OSError, ValueError):
            return None
        return {str(k): str(v) for k, v in key.items()} if isinstance(key, dict) else None

    def sealed(self) -> bool:
        """Whether the cached environment was sealed right after uv's install."""
        return self._facts().sealed

    def _facts(self) -> Restored:
        try:
            facts = json.loads(self._facts_file.read_text())
        except (OSError, ValueError):
            return Restored(False, None)
        if not isinstance(facts, dict):
            return Restored(False, None)
        size = facts.get("bytes")
        return Restored(facts.get("sealed") is True, size if isinstance(size, int) else None)

    def has_downloads(self) -> bool:
        """Whether ``uv/`` holds anything: else a build downloads into a cache of its own."""
        try:
            with os.scandir(self.uv) as entries:
                return any(True for _ in entries)
        except OSError:  # none yet (or no directory): nothing to reuse
            return False

    def take_in(self, downloads: Path) -> None:
        """A build's own uv cache (``downloads``, in its new environment), once uv's
        processes are gone: moved at once where its user cannot reach it, to be kept by
        :meth:`keep_downloads` (its files are the environment's too); removed if it cannot
        be (it must not stay in the environment)."""
        # By the environment's descriptor: the build's user owned the slug, and a link in
        # place of .venv must not take root anywhere else.
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            parent = os.open(downloads.parent, flags)
        except OSError:  # no environment (uv failed early), or a link: nothing of ours there
            return
        try:
            self.root.parent.mkdir(mode=0o711, exist_ok=True)
            self.root.mkdir(mode=0o711, exist_ok=True)
            shutil.rmtree(self._incoming, ignore_errors=True)  # a server stopped before
            self._incoming.mkdir(mode=0o700)
            os.rename(downloads.name, self._incoming / "uv", src_dir_fd=parent)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("could not keep a build's downloads in %s: %s", self.root, exc)
            shutil.rmtree(downloads.name, ignore_errors=True, dir_fd=parent)
        finally:
            os.close(parent)

    def keep_downloads(self) -> None:
        """Copy what :meth:`take_in` moved in (if anything) into ``uv/``: new files, root's,
        shared with no slug; then remove it."""
        source = self._incoming / "uv"
        try:
            if stat.S_ISDIR(source.lstat().st_mode):  # what the build left there, not a link
                copy = self._incoming / "copy"
                _copy(source, copy)
                take_back(copy)
                shutil.rmtree(self.uv, ignore_errors=True)
                copy.rename(self.uv)
        except FileNotFoundError:
            pass
        finally:
            shutil.rmtree(self._incoming, ignore_errors=True)

    def open_for(self, user: DynoUser | None) -> None:
        """Ready the cache for a build: ``uv/`` handed to the build's ``user``; the cache's
        directories passable, not listable, by others (the user reaches ``uv/`` only)."""
        self.root.parent.mkdir(mode=0o711, exist_ok=True)
        self.root.mkdir(mode=0o711, exist_ok=True)
        self.uv.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            self.root.parent.chmod(0o711)
            self.root.chmod(0o711)
            hand_over(self.uv, user)

    def close(self, user: DynoUser | None) -> None:
        """After the build's processes are gone: ``uv/`` root's again (if it was handed
        over: it is the user's only while it owns the top)."""
        with contextlib.suppress(FileNotFoundError):
            if user is not None and self.uv.lstat().st_uid == user.uid:
                take_back(self.uv)

    def restore(self, dest: Path) -> Restored:
        """Move the cached environment to ``dest`` (a rename: no file is copied, as Heroku
        moves its cache into the build), its top opened to pass through (what is in it is
        readable by all, writable by root only; the slug around it is closed); the cache is
        empty until the next :meth:`save`."""
        facts = self._facts()
        for done in (self._key_file, self._facts_file):
            with contextlib.suppress(FileNotFoundError):
                done.unlink()
        self.venv.rename(dest)
        dest.chmod(0o755)
        return facts

    def save(self, venv: Path, key: dict[str, str], *, sealed: bool) -> None:
        """Keep a sealed copy of ``venv`` as the cache for ``key``, replacing the last one
        whole. ``sealed``: the build sealed ``venv`` right after uv's install."""
        partial = self.root / "partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        copy = partial / "venv"
        _copy(venv, copy)
        size = seal(copy).bytes
        for stale in (self._key_file, self._facts_file):  # no key while it is being replaced
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        shutil.rmtree(self.venv, ignore_errors=True)
        copy.rename(self.venv)
        partial.rmdir()
        self._facts_file.write_text(json.dumps({"sealed": sealed, "bytes": size}))
        self._key_file.write_text(json.dumps(key))

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _copy(source: Path, dest: Path) -> None:
    """``cp -a`` (links stay links, modes and times kept): several times faster than
    shutil.copytree on a virtualenv's thousands of small files."""
    result = subprocess.run(
        ["cp", "-a", "--", str(source), str(dest)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise OSError(f"cp -a {source} {dest}: {result.stderr.strip()}")
