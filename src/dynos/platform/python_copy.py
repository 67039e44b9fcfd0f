"""A host interpreter's own files copied out of its prefix, and made to load its own
``libpython`` wherever the copy is moved (:class:`~dynos.platform.pythons.HostPythons` makes
the copies in ``<home>/pythons``).

The copy takes ``bin/python3``, ``bin/python3.X``, ``lib/python3.X`` without its tests and
installed packages, ``lib/libpython3.X*.so*`` and ``include/python3.X*``; never the rest of a
prefix it shares (``/opt/tools``' other programs): a container build copies the tree into
every slug. A prefix laid out otherwise (a Fedora-style ``lib64`` stdlib, a binary outside
``bin``) is :class:`LayoutNotCopied`, naming what is missing. Each copy holds a marker
(:func:`copy_marker`) of what it was copied from, so a changed interpreter is copied anew.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dynos.core.python_build import Version

_LEFT_OUT = {
    *("test", "idlelib", "tkinter", "turtledemo", "__phello__"),
    *("site-packages", "dist-packages"),  # packages installed into it: a build installs its own
}


def copy_interpreter(prefix: Path, target: Path, binary: str, version: Version) -> None:
    """Copy of ``prefix``'s interpreter ``bin/<binary>`` into ``target`` (made here): its
    names in ``bin``, its standard library, its shared ``libpython`` and its headers (a build
    compiles extensions against them), each as a link where it is one; nothing else of the
    prefix. LayoutNotCopied when the prefix is not laid out so (a Fedora-style ``lib64``
    stdlib, a binary outside ``bin``); OSError when a part cannot be read or written."""
    minor = f"python{version[0]}.{version[1]}"
    if not (prefix / "bin" / binary).is_file():
        raise LayoutNotCopied(prefix / "bin" / binary, "is not there (its binary is elsewhere)")
    if not (prefix / "lib" / minor / "os.py").is_file():
        raise LayoutNotCopied(prefix / "lib" / minor / "os.py", "is not there")
    if (prefix / "lib64" / minor).is_dir():
        raise LayoutNotCopied(prefix / "lib" / minor / "lib-dynload", f"is in lib64/{minor}")
    (target / "bin").mkdir(parents=True)
    for name in dict.fromkeys((binary, minor, "python3")):
        _copy_entry(prefix / "bin" / name, target / "bin" / name)
    (target / "lib").mkdir()
    shutil.copytree(prefix / "lib" / minor, target / "lib" / minor, symlinks=True, ignore=_left_out)
    for library in sorted((prefix / "lib").glob(f"lib{minor}*.so*")):
        _copy_entry(library, target / "lib" / library.name)
    for headers in sorted((prefix / "include").glob(f"{minor}*")):
        if headers.is_dir():
            (target / "include").mkdir(exist_ok=True)
            shutil.copytree(headers, target / "include" / headers.name, symlinks=True)


MARKER = ".dynos-copy"  # in a copy: copy_marker's text, of what it was copied from
COPY_LAYOUT = 2  # what copy_interpreter takes; 1 (no marker) copied a prefix whole


class LayoutNotCopied(Exception):
    """A prefix not laid out as ``copy_interpreter`` copies one: ``missing`` is not there."""

    def __init__(self, missing: Path, why: str) -> None:
        super().__init__(f"{missing} {why}")
        self.missing = missing
        self.why = why


def copy_marker(source: Path) -> str:
    """What a copy of the interpreter binary ``source`` (its real path) is a copy of: the
    copy's layout, the binary and its change time and size (a reinstall changes them)."""
    info = source.stat()
    return json.dumps(
        {
            "layout": COPY_LAYOUT,
            "source": str(source),
            "mtime_ns": info.st_mtime_ns,
            "size": info.st_size,
        },
        sort_keys=True,
    )


def marker_of(copy: Path) -> str | None:
    try:
        return (copy / MARKER).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def os_error_cause(exc: OSError) -> str:
    """An OSError in one short clause: copytree's shutil.Error lists every file it failed."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        failures = exc.args[0]
        first = str(failures[0][2]) if failures and len(failures[0]) == 3 else str(exc)
        more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
        return f"{first[:200]}{more}"
    text = str(exc.strerror or exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _copy_entry(source: Path, target: Path) -> None:
    """``source`` at ``target``: a link to a name beside it stays that link (python3 ->
    python3.12); any other link is copied as the file it reaches; a missing one is skipped."""
    if source.is_symlink():
        link = os.readlink(source)
        if "/" not in link and (source.parent / link).exists():
            target.symlink_to(link)
            return
    if source.is_file():
        shutil.copy2(source, target)


def _left_out(directory: str, names: list[str]) -> set[str]:
    left = {name for name in names if name in _LEFT_OUT}
    if os.path.basename(directory).startswith("config-"):
        left |= {name for name in names if name.endswith(".a")}  # the static libpython
    return left


def relocate_runpath(binary: Path, old: str) -> None:
    """Make an ELF's RUNPATH ``old`` (its own prefix's lib) ``$ORIGIN/../lib``, in place: the
    new string is shorter and ends with a NUL, so nothing else in the file moves. A binary
    without that string (a static build) is left as it is."""
    data = bytearray(binary.read_bytes())
    needle = b"\0" + old.encode() + b"\0"
    at = data.find(needle)
    if at < 0 or data.find(needle, at + 1) >= 0:
        return
    new = b"$ORIGIN/../lib"
    data[at + 1 : at + 1 + len(old)] = new + b"\0" * (len(old) - len(new))
    binary.write_bytes(bytes(data))
