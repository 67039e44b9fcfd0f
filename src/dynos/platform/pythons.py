"""The host's Python interpreters, found for builds, and made usable by an app's user.

A build asks for a version (:mod:`dynos.core.python_build`); this module says what the host
has: ``python3.X`` on PATH (never pyenv's shims, which are scripts that need pyenv), pyenv's
versions, and uv-managed ones (the server's own, under ``<home>/pythons/uv``). When none fits,
``uv python install`` may fetch one into ``<home>/pythons/uv``, where the network allows.

A build runs as the app's unprivileged user, and so do its dynos through the virtualenv's
link to the interpreter. As root, an interpreter under a closed directory (pyenv in /root) is
out of their reach: it is copied into ``<home>/pythons/<source>-<version>-<hash>`` (root's,
readable by all; :mod:`~dynos.platform.python_copy`: the interpreter's own files, never the
rest of a prefix it shares), and an absolute RUNPATH to its own ``lib`` (how pyenv links
``libpython``) becomes ``$ORIGIN/../lib``, so the copy loads its own library. The hash is of
the copy's marker (what it was copied from, as it was then): an interpreter reinstalled is
copied anew under a new name, and the old copy stays for the virtualenvs linked to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
from pathlib import Path

from dynos.core.python_build import Interpreter, PythonRequest, Version, format_version
from dynos.errors import PlatformError
from dynos.platform.python_copy import (
    MARKER,
    LayoutNotCopied,
    copy_interpreter,
    copy_marker,
    marker_of,
    os_error_cause,
    relocate_runpath,
)

log = logging.getLogger(__name__)

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
_PYTHON_NAME = re.compile(r"python3(\.[0-9]+)?")
_VERSION_DIR = re.compile(r"(?:cpython-)?([0-9]+)\.([0-9]+)\.([0-9]+)(?:[-+].*)?")


class HostPythons:
    """The interpreters of this host; ``pythons_dir`` (``<home>/pythons``) holds the copies
    and uv's downloads. ``shared``: builds run as other users (the server is root)."""

    def __init__(self, pythons_dir: Path, *, shared: bool, uv: str | None) -> None:
        self.dir = pythons_dir
        self.shared = shared
        self.uv = uv
        self._versions: dict[tuple[str, float], Version | None] = {}
        self._copying = threading.Lock()

    def open_dir(self) -> None:
        """``<home>/pythons``: root's, open to all (whatever the server's umask)."""
        self.dir.mkdir(exist_ok=True)
        self.dir.chmod(0o755)

    def find(self) -> list[Interpreter]:
        found: dict[str, Interpreter] = {}
        for interpreter in [*self._on_path(), *self._pyenv(), *self._uv_managed()]:
            found.setdefault(os.path.realpath(interpreter.path), interpreter)
        return list(found.values())

    def _on_path(self) -> list[Interpreter]:
        dirs = [*os.environ.get("PATH", "").split(os.pathsep), *SYSTEM_PATH]
        found = []
        for directory in dict.fromkeys(d for d in dirs if d and "/.pyenv/" not in d + "/"):
            with contextlib.suppress(OSError):
                for entry in os.scandir(directory):
                    if _PYTHON_NAME.fullmatch(entry.name):
                        version = self._version_of(entry.path)
                        if version is not None:
                            found.append(Interpreter(version, entry.path, "PATH"))
        return found

    def _version_of(self, path: str) -> Version | None:
        """The version an interpreter reports (cached by path and change time); None for
        anything that is not a working Python (a script, a broken link)."""
        try:
            with open(path, "rb") as file:  # closed at once: a peek left open warns
                if file.read(2) == b"#!":
                    return None
            key = (os.path.realpath(path), os.stat(path).st_mtime)
        except OSError:
            return None
        if key not in self._versions:
            try:
                out = subprocess.run(
                    [path, "-I", "-c", "import sys; print(*sys.version_info[:3])"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                ).stdout
                self._versions[key] = tuple(int(part) for part in out.split())
            except (OSError, subprocess.SubprocessError, ValueError):
                self._versions[key] = None
        return self._versions[key]

    def _pyenv(self) -> list[Interpreter]:
        root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
        return _versions_in(root / "versions", "pyenv")

    def _uv_managed(self) -> list[Interpreter]:
        return _versions_in(self.dir / "uv", "uv")

    def download(self, request: PythonRequest) -> tuple[Interpreter | None, str]:
        """``uv python install`` of the version asked for, into ``<home>/pythons/uv``: the
        interpreter, or None and why not (one clause)."""
        if self.uv is None or request.version is None:
            return None, "uv is not installed to download one"
        wanted = format_version(request.version)
        env = {
            **_network_env(),
            "PATH": os.pathsep.join(SYSTEM_PATH),
            "HOME": str(self.dir),
            "UV_PYTHON_INSTALL_DIR": str(self.dir / "uv"),
            "UV_HTTP_RETRIES": "0",  # no network fails at once, not after a minute of retries
            "UV_NO_CONFIG": "1",
        }
        self.open_dir()
        try:
            result = subprocess.run(
                [self.uv, "python", "install", "--no-bin", wanted],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"uv could not download it ({exc})"
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            cause = lines[-1].removeprefix("Caused by:").strip() if lines else "no output"
            return None, f"uv could not download it ({cause})"
        for interpreter in self._uv_managed():
            if interpreter.matches(request.version):
                _open_to_all(self.dir / "uv")
                return interpreter, ""
        return None, "uv installed nothing that matches"

    def usable(self, interpreter: Interpreter) -> Interpreter:
        """``interpreter``, or a copy of it in ``<home>/pythons`` that every user can run."""
        if not self.shared or _world_reachable(Path(interpreter.path)):
            return interpreter
        copy = self.relocatable(interpreter)
        name = os.path.basename(os.path.realpath(interpreter.path))
        return Interpreter(interpreter.version, str(copy / "bin" / name), interpreter.source)

    def relocatable(self, interpreter: Interpreter) -> Path:
        """The install tree of a copy of ``interpreter`` in ``<home>/pythons``: its own files
        of its prefix (``python_copy.copy_interpreter``), its RUNPATH ``$ORIGIN/../lib``, so
        that it runs wherever the tree is copied (a container build copies it into a slug).
        Its name ends with a hash of its marker (``python_copy.copy_marker``: what it was
        copied from, as it was then): an interpreter changed or reinstalled is copied anew
        under a new name, while the old copy stays for the virtualenvs that link to it, and
        two interpreters of one version never share one. PlatformError, saying what to do,
        when it cannot be made."""
        source = Path(os.path.realpath(interpreter.path))
        prefix = source.parent.parent  # <prefix>/bin/python3.X
        version = format_version(interpreter.version)
        try:
            marker = copy_marker(source)
        except OSError as exc:
            raise PlatformError(
                f"Could not read Python {version} at {source} ({exc.strerror or exc}): make it "
                "readable by the server, then build again."
            ) from None
        digest = hashlib.sha256(marker.encode()).hexdigest()[:10]
        copy = self.dir / f"{interpreter.source}-{version}-{digest}"
        with self._copying:  # two builds asking for the same copy at once make it once
            if marker_of(copy) != marker:
                self._make_copy(prefix, source.name, interpreter.version, copy, marker)
                log.info("copied Python %s from %s to %s", version, prefix, copy)
        return copy

    def _make_copy(
        self, prefix: Path, binary: str, version: Version, copy: Path, marker: str
    ) -> None:
        """``copy`` made in a partial tree, then renamed into place; one there already (its
        marker missing or another: a copy cut short by hand) is moved aside first."""
        partial = self.dir / f".{copy.name}.partial"
        aside = self.dir / f".{copy.name}.stale"
        number = format_version(version)
        try:
            self.open_dir()
            shutil.rmtree(partial, ignore_errors=True)
            copy_interpreter(prefix, partial, binary, version)
            relocate_runpath(partial / "bin" / binary, str(prefix / "lib"))
            (partial / MARKER).write_text(marker)
            _open_to_all(partial)
            if copy.exists():
                shutil.rmtree(aside, ignore_errors=True)
                copy.rename(aside)
            partial.rename(copy)
        except LayoutNotCopied as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise PlatformError(
                f"The layout of Python {number} in {prefix} cannot be copied: {exc}. Use an "
                f"install of {number} laid out as pyenv's and uv's are (bin/python3.X, "
                "lib/python3.X, lib/libpython3.X): pyenv install "
                f"{number}, or uv python install {number}; then build again."
            ) from None
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise PlatformError(
                f"Could not copy Python {number} from {prefix} to {copy} "
                f"({os_error_cause(exc)}): make {self.dir} a writable directory with free "
                f"space and {prefix} readable by the server, then build again."
            ) from None
        shutil.rmtree(aside, ignore_errors=True)

    def usable_tool(self, path: str) -> str:
        """``path`` (uv's binary), or a copy of it in ``<home>/pythons/bin`` that every
        user can run, made again when the original changes: a hard link when the original
        is root's and 0755 (nobody else can change it; the same filesystem), else a copy."""
        if not self.shared or _world_reachable(Path(path)):
            return path
        copy = self.dir / "bin" / Path(path).name
        source = os.stat(path)
        with contextlib.suppress(OSError):
            if copy.stat().st_mtime == source.st_mtime and copy.stat().st_size == source.st_size:
                return str(copy)
        self.open_dir()
        copy.parent.mkdir(mode=0o755, exist_ok=True)
        copy.parent.chmod(0o755)
        partial = copy.with_name(f".{copy.name}.partial")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        try:  # a link, when the binary is root's and runnable by all already: no 40 MB copy
            if source.st_uid != 0 or stat.S_IMODE(source.st_mode) & 0o7777 != 0o755:
                raise OSError("not root's 0755: a copy is opened to all instead")
            os.link(path, partial)  # the file `source` describes
        except OSError:
            shutil.copy2(path, partial)
            _open_to_all(partial)
        partial.rename(copy)
        return str(copy)


def _versions_in(directory: Path, source: str) -> list[Interpreter]:
    found = []
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            match = _VERSION_DIR.fullmatch(entry.name)
            python = Path(entry.path, "bin", "python3")
            if match and python.exists():
                version = tuple(int(part) for part in match.groups())
                found.append(Interpreter(version, str(python), source))
    return found


SYSTEM_PREFIXES = ("/", "/usr", "/usr/local")


def own_install_tree(interpreter: Interpreter) -> Path | None:
    """The prefix ``interpreter`` was installed into, when that tree is its own (pyenv's,
    uv's, ``/opt/python3.13``): what a container build may mount and copy. None for one in a
    system prefix (``/usr/bin/python3.11``, Debian's, shares ``/usr`` with everything else)."""
    source = Path(os.path.realpath(interpreter.path))
    prefix = source.parent.parent
    major, minor = interpreter.version[:2]
    if str(prefix) in SYSTEM_PREFIXES or source.parent.name != "bin":
        return None
    if not (prefix / "lib" / f"python{major}.{minor}" / "os.py").is_file():
        return None
    return prefix


def _open_to_all(root: Path) -> None:
    """Root's (when the server is root), readable (and where executable, runnable) by every
    user, writable by none."""
    as_root = os.geteuid() == 0
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            if as_root:
                os.lchown(path, 0, 0)
            continue
        if as_root:
            os.chown(path, 0, 0)
        mode = stat.S_IMODE(info.st_mode) & 0o755 | 0o444
        if stat.S_ISDIR(info.st_mode) or info.st_mode & 0o100:
            mode |= 0o111
        os.chmod(path, mode)


def _world_reachable(path: Path) -> bool:
    try:
        resolved = path.resolve(strict=True)
        return all(p.stat().st_mode & stat.S_IXOTH for p in resolved.parents) and bool(
            resolved.stat().st_mode & stat.S_IXOTH
        )
    except OSError:
        return False


NETWORK_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def _network_env(server_env: dict[str, str] | None = None) -> dict[str, str]:
    """The operator's network settings for downloads: certificates, proxies, uv's own."""
    env = dict(os.environ) if server_env is None else server_env
    return {
        key: value
        for key, value in env.items()
        if key.upper() in NETWORK_VARIABLES or key.startswith("UV_")
    }
