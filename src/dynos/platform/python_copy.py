"""A host interpreter's own files copied out of its prefix, and made to load its own
``libpython`` wherever the copy is moved (:class:`~dynos.platform.pythons.HostPythons` makes
the copies in ``<home>/pythons``).

The copy takes ``bin/python3``, ``bin/python3.X``, ``lib/python3.X`` without its tests and
installed packages (and tkinter, C part included), ``lib/libpython3.X*.so*``,
``include/python3.X*``, and the libraries of the prefix's ``lib`` those files load (a conda
prefix's libssl, libffi, libz...: :func:`needed_libraries`); never the rest of a prefix it
shares (``/opt/tools``' other programs): a container build copies the tree into
every slug. A prefix laid out otherwise (a Fedora-style ``lib64`` stdlib, a binary outside
``bin``) is :class:`LayoutNotCopied`, naming what is missing. Each copy holds a marker
(:func:`copy_marker`) of what it was copied from, so a changed interpreter is copied anew.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
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
    loaded = [target / "bin" / binary, *(target / "lib").glob(f"lib{minor}*.so*")]
    loaded += sorted((target / "lib" / minor / "lib-dynload").glob("*.so"))
    _copy_needed(prefix / "lib", target / "lib", loaded)


def _copy_needed(source: Path, target: Path, loaded: list[Path]) -> None:
    """Into ``target``, the libraries of the prefix's ``source`` (its ``lib``) that the
    ``loaded`` files need, and those they need in turn: a self-contained prefix (conda's)
    keeps libssl, libffi, libz... there, found by its modules' RUNPATH (``$ORIGIN/../..``);
    a prefix with only libpython there (pyenv's) adds nothing. Each is copied as the file
    it is, under the name the loader asks for."""
    queue, asked = list(loaded), set()
    while queue:
        for name in needed_libraries(queue.pop()):
            if name in asked or "/" in name:
                continue
            asked.add(name)
            if (source / name).is_file() and not (target / name).exists():
                shutil.copy2(source / name, target / name)
                queue.append(target / name)


def needed_libraries(path: Path) -> list[str]:
    """The libraries (``DT_NEEDED``) an ELF file asks the loader for, read as ``readelf -d``
    reads them: from its dynamic segment, the names in its string table. A 64-bit
    little-endian file's (the machines dynos runs on); [] for anything else."""
    try:
        data = path.read_bytes()
        if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
            return []
        (phoff,) = struct.unpack_from("<Q", data, 0x20)
        size, count = struct.unpack_from("<HH", data, 0x36)
        loads, dynamic = [], None
        for at in range(phoff, phoff + size * count, size):
            kind, _, offset, address, _, length = struct.unpack_from("<IIQQQQ", data, at)
            if kind == 1:  # PT_LOAD: where the string table's address lies in the file
                loads.append((address, offset, length))
            elif kind == 2:  # PT_DYNAMIC
                dynamic = (offset, length)
        if dynamic is None:
            return []  # a static binary
        entries = [
            struct.unpack_from("<qQ", data, at)
            for at in range(dynamic[0], dynamic[0] + dynamic[1] - 15, 16)
        ]
        strtab = next((value for tag, value in entries if tag == 5), 0)  # DT_STRTAB
        base = next(o + strtab - a for a, o, n in loads if a <= strtab < a + n)
    except (OSError, struct.error, StopIteration):
        return []
    names = []
    for tag, value in entries:
        if tag == 0:  # DT_NULL: the end
            break
        if tag == 1:  # DT_NEEDED
            end = data.find(b"\0", base + value)
            names.append(data[base + value : end].decode("utf-8", "replace"))
    return names


MARKER = ".dynos-copy"  # in a copy: copy_marker's text, of what it was copied from
COPY_LAYOUT = 3  # what copy_interpreter takes: 1 (no marker) a prefix whole, 2 no libraries


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
    if os.path.basename(directory) == "lib-dynload":  # tkinter is left out: its C part too
        left |= {name for name in names if name.startswith("_tkinter.")}
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
