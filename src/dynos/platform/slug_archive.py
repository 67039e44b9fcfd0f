"""Unpacking an uploaded app directory (a .tar.gz) into a new slug, checking as it streams.

The upload is a tenant's input, and the server (root, in production) unpacks it into its own
home. So the archive is read as a stream and every member's header is judged before anything
of that member is written (:func:`admit`, pure): a path outside the slug (absolute, ``..``),
a link whose target is absolute or leaves the slug, a member inside a link or a file, a
second member of the same name, a device or FIFO, a sparse file, a path too long or too
deep, more members (the directories a path makes count) or more bytes than the server's
limits. Once all is written, every link is followed for real and must still lead inside (a
chain of links can leave where each alone seems not to). A refusal
removes what was written; sizes are never measured after extracting. Modes keep the
owner's bits and the read and execute bits of others, never setuid, setgid, sticky or write
for others, and ownership never comes from the archive. Python's
``extractall(filter="data")`` checks much the same, but only since 3.11.4; these checks run
on every Python dynos supports, and the data filter, where it exists, is asked about each
member as well.

Two kinds of member make :mod:`tarfile` read what they announce into memory before it hands
the member over: extended headers (pax, GNU long names) and sparse maps. Those are refused
as their header arrives (:class:`_GuardedTarInfo`), so a small upload cannot make the server
read a gigabyte into memory either.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynos.core.procfile import parse_procfile
from dynos.core.slugignore import parse_slugignore
from dynos.errors import BadRequest, UserError
from dynos.manager.health import read_healthchecks
from dynos.platform.build import Slug

MB = 1024 * 1024
MAX_UNPACKED_MB = 1024  # default of --max-unpacked-size
MAX_UNPACKED_FILES = 100_000  # default of --max-unpacked-files
MAX_EXTENDED_HEADER = 64 * 1024  # a pax header or GNU long name larger than this is refused
# A member's path: Linux allows 4096 bytes (PATH_MAX) for the whole path, the slug's place
# (<home>/slugs/<id>) included; deep node_modules paths reach a few hundred. The depth bounds
# one member's work: each level is made and walked, and Path.mkdir(parents=True), os.walk and
# shutil.rmtree recurse once per level (1,000 raise RecursionError). Real apps stay far below.
MAX_PATH_BYTES = 1024
MAX_PATH_DEPTH = 64
MAX_PROCFILE = MB
CHUNK = MB

DIR, FILE, LINK = "directory", "file", "link"
_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_REPACK = "Pack the app directory itself with 'dynos deploy DIR'."


class Refused(UserError):
    """The upload holds something a slug may not, or more than the server allows."""


@dataclass(frozen=True)
class UnpackLimits:
    max_bytes: int = MAX_UNPACKED_MB * MB  # the files' total size, unpacked
    max_members: int = MAX_UNPACKED_FILES  # files, directories and links


@dataclass
class Tally:
    """What an archive held so far: its members by path, and their count and bytes."""

    kinds: dict[str, str] = field(default_factory=dict)
    members: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Entry:
    """One member to write: its path in the slug, what it is, its mode, a link's target."""

    path: str
    kind: str
    mode: int = 0
    target: str = ""  # a symlink's target as written, or a hard link's path in the slug
    hard_link: bool = False


def admit(member: tarfile.TarInfo, tally: Tally, limits: UnpackLimits) -> Entry | None:
    """Judge one member from its header alone and count it in ``tally``. Returns what to write,
    or None for the archive's top directory itself (``.``). Raises Refused."""
    path = _slug_path(member.name)
    if path is None:
        if member.isdir():
            return None
        raise Refused(f"The upload has a {_kind_name(member)} as its top directory. {_REPACK}")
    parts = path.split("/")
    _check_path(path, parts)
    made = 0  # the directories on its way not seen before: they are made, so they count
    for depth in range(1, len(parts)):
        above = "/".join(parts[:depth])
        kind = tally.kinds.get(above)
        if kind is None:
            made += 1
        elif kind != DIR:
            raise Refused(
                f"The upload puts {path} inside {above}, which it holds as a {kind}. {_REPACK}"
            )
    tally.members += 1 + made
    if tally.members > limits.max_members:
        raise too_many_members(limits)
    known = tally.kinds.get(path)
    if known is not None and not (known == DIR and member.isdir()):
        raise Refused(f"The upload holds {path} twice. {_REPACK}")
    entry = _entry(member, path, tally, limits)
    for depth in range(1, len(parts)):  # directories made on the way are directories too
        tally.kinds.setdefault("/".join(parts[:depth]), DIR)
    tally.kinds[path] = entry.kind
    return entry


def too_many_members(limits: UnpackLimits) -> Refused:
    return Refused(
        f"The upload holds more than {limits.max_members} files and directories (the "
        "server's --max-unpacked-files; directories made for a path count too): leave "
        "generated files out of the app directory."
    )


def too_many_bytes(limits: UnpackLimits, path: str) -> Refused:
    return Refused(
        f"The upload unpacks to more than {limits.max_bytes // MB} MB (the server's "
        f"--max-unpacked-size; it stopped at {path}): leave large data and generated files "
        "out of the app directory."
    )


def _check_path(path: str, parts: list[str]) -> None:
    """Refused past MAX_PATH_BYTES or MAX_PATH_DEPTH (the message shows the path's start)."""
    size = len(path.encode("utf-8", "surrogateescape"))
    if size > MAX_PATH_BYTES or len(parts) > MAX_PATH_DEPTH:
        raise Refused(
            f"The upload holds a path of {size} bytes and {len(parts)} levels ({path[:80]}...): "
            f"paths in an app directory may have at most {MAX_PATH_BYTES} bytes and "
            f"{MAX_PATH_DEPTH} levels. Shorten or remove it and deploy again."
        )


def _entry(member: tarfile.TarInfo, path: str, tally: Tally, limits: UnpackLimits) -> Entry:
    if member.issparse():
        raise Refused(f"The upload holds {path} as a sparse file. {_REPACK}")
    if member.isdir():
        return Entry(path, DIR, (member.mode & 0o755) | 0o700)
    if member.isreg():
        tally.bytes += member.size
        if tally.bytes > limits.max_bytes:
            raise too_many_bytes(limits, path)
        return Entry(path, FILE, (member.mode & 0o755) | 0o600)
    if member.issym():
        return Entry(path, LINK, target=_link_target(path, member.linkname))
    if member.islnk():
        target = _slug_path(member.linkname)
        if target is None or tally.kinds.get(target) != FILE:
            raise Refused(
                f"The upload holds {path} as a hard link to {member.linkname!r}, which is not "
                f"a file before it in the upload. {_REPACK}"
            )
        return Entry(path, FILE, target=target, hard_link=True)
    raise Refused(
        f"The upload holds {path}, a {_kind_name(member)}: an app directory holds files, "
        "directories and links only. Remove it and deploy again."
    )


def _slug_path(name: str) -> str | None:
    """``name`` as a path inside the slug (``a/b``), None for the slug itself. Refused when
    absolute or when it climbs out (any ``..``)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts or "\0" in name:
        raise Refused(f"The upload holds a path outside the app directory: {name!r}. {_REPACK}")
    return "/".join(parts) or None


def _link_target(path: str, target: str) -> str:
    """A symlink's target, when it stays inside the slug (read from where the link is)."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if not target or target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise Refused(
            f"The upload holds {path} as a link to {target!r}, outside the app directory: "
            "links must be relative and stay inside it."
        )
    return target


def _kind_name(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    return "file" if member.isreg() else f"member of type {member.type!r}"


class _GuardedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses, on its header, what tarfile would read into memory unchecked.

    tarfile's own comment names ``_proc_member`` as the hook for subclasses; the sparse
    handlers are overridden because tarfile reads a sparse map before the member is returned.
    """

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise Refused(f"The upload holds {self.name} as a sparse file. {_REPACK}")
        if self.type in _EXTENDED and self.size > MAX_EXTENDED_HEADER:
            raise Refused(
                f"The upload has an extended header of {self.size} bytes (at most "
                f"{MAX_EXTENDED_HEADER} are read). {_REPACK}"
            )
        processed: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return processed

    def _refuse_sparse(self, *_: Any) -> None:
        raise Refused(f"The upload holds a sparse file. {_REPACK}")

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _refuse_sparse


def unpack_slug(tarball: Path, slugs_dir: Path, limits: UnpackLimits | None = None) -> Slug:
    """Unpack ``tarball`` into a new slug directory and read its Procfile.

    Raises BadRequest for something that is not a .tar.gz, Refused for a member or a size the
    slug may not have, UserError for a missing or malformed Procfile or app.json's health
    checks (core/healthchecks.py); in every case nothing
    is left behind.
    """
    limits = limits or UnpackLimits()
    slug_id = str(uuid.uuid4())
    path = slugs_dir / slug_id
    path.mkdir(parents=True)
    try:
        try:
            _unpack(tarball, path, limits)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise BadRequest(
                f"The upload is not a readable .tar.gz of an app directory ({exc})."
            ) from exc
        apply_slugignore(path)
        processes = parse_procfile(_read_procfile(path))
        read_healthchecks(path)  # a bad app.json fails the deploy here, before any build
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return Slug(slug_id, path, processes)


def apply_slugignore(slug: Path) -> int:
    """Remove what the slug's ``.slugignore`` lists (core/slugignore.py), before the build
    sees it, as on Heroku; links are removed as links, never followed. Returns how many
    files and directories went."""
    try:
        fd = os.open(slug / ".slugignore", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0
    with os.fdopen(fd, "rb") as file:
        ignore = parse_slugignore(file.read(MB).decode("utf-8", "replace"))
    removed = 0
    for dirpath, dirnames, filenames in os.walk(slug):
        here = Path(dirpath).relative_to(slug)
        for name in list(dirnames):
            if ignore.ignores((here / name).as_posix()):
                dirnames.remove(name)
                path = Path(dirpath) / name
                if path.is_symlink():
                    path.unlink()
                else:
                    shutil.rmtree(path, ignore_errors=True)
                removed += 1
        for name in filenames:
            if ignore.ignores((here / name).as_posix()):
                (Path(dirpath) / name).unlink()
                removed += 1
    return removed


def slug_size(slug: Path, known: Mapping[str, int] | None = None) -> int:
    """The bytes of the slug's files (links and directories not counted), as built.
    ``known``: directories at its top whose bytes the build measured (and nobody could
    change since): counted as such, not walked."""
    known = known or {}
    total = sum(known.values())
    for dirpath, dirnames, filenames in os.walk(slug):
        if dirpath == str(slug):
            dirnames[:] = [name for name in dirnames if name not in known]
        for name in filenames:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total


def describe_size(n: int) -> str:
    """``512 B``, ``12.3 KB``, ``45.6 MB``, as the build output shows a slug's size."""
    if n < 1024:
        return f"{n} B"
    if n < MB:
        return f"{n / 1024:.1f} KB"
    return f"{n / MB:.1f} MB"


def _unpack(tarball: Path, dest: Path, limits: UnpackLimits) -> None:
    tally = Tally()
    data_filter = getattr(tarfile, "data_filter", None)  # Python 3.11.4 and later
    with tarfile.open(tarball, "r|gz", tarinfo=_GuardedTarInfo) as archive:
        while (member := archive.next()) is not None:
            # A stream keeps every header read in ``members`` (not in the type stubs), which
            # only extracting a hard link's target reads back: this one never does.
            archive.members.clear()  # type: ignore[attr-defined]
            entry = admit(member, tally, limits)
            if entry is None:
                continue
            if data_filter is not None:
                data_filter(member, str(dest))  # raises its own FilterError (a TarError)
            _write(archive, member, entry, dest)
    _check_links(dest, [path for path, kind in tally.kinds.items() if kind == LINK])


def _check_links(dest: Path, links: list[str]) -> None:
    """Once every link exists: each must lead inside the slug when followed for real. A link
    judged alone may seem to (``b -> a/..`` stays in, as written), yet leave it through
    another (``a -> x/..`` made later, say)."""
    top = os.path.realpath(dest)
    for link in links:
        if os.path.commonpath([top, os.path.realpath(dest / link)]) != top:
            raise Refused(
                f"The upload holds {link} as a link that leads outside the app directory "
                "through other links: links must stay inside it."
            )


def _write(archive: tarfile.TarFile, member: tarfile.TarInfo, entry: Entry, dest: Path) -> None:
    """Write one admitted member. Nothing is written through a link: admit() refused every
    path inside one, and files are created anew (O_EXCL, O_NOFOLLOW)."""
    path = dest / entry.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.kind == DIR:
        path.mkdir(exist_ok=True)
        path.chmod(entry.mode)
    elif entry.kind == LINK:
        os.symlink(entry.target, path)
    elif entry.hard_link:
        os.link(dest / entry.target, path, follow_symlinks=False)
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, entry.mode)
        with os.fdopen(fd, "wb") as out:
            source = archive.extractfile(member)
            assert source is not None  # a regular file always has data
            while chunk := source.read(CHUNK):
                out.write(chunk)
        with contextlib.suppress(OverflowError, ValueError, OSError):  # an absurd mtime
            os.utime(path, (member.mtime, member.mtime))


def _read_procfile(slug: Path) -> str:
    """The Procfile's text: a regular file at the slug's top (or a link to one inside it:
    _check_links saw to that), at most MAX_PROCFILE bytes."""
    try:
        fd = os.open(slug / "Procfile", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        with os.fdopen(fd, "rb") as file:
            if stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                text = file.read(MAX_PROCFILE + 1)
                if len(text) > MAX_PROCFILE:
                    raise UserError("The Procfile is over 1 MB: it should list process types.")
                return text.decode("utf-8", errors="replace")
    raise UserError(
        "No Procfile at the top of the app directory: add one with a line like "
        "'web: python3 web.py'."
    )
