"""Unpacking uploads: every member judged on its header, on every Python dynos supports.

The same cases run with tarfile's data filter (Python 3.11.4 and later) and without it, as on
Debian's 3.11.2, where only dynos' own checks stand between an upload and the server's home.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.errors import BadRequest, UserError
from dynos.platform.slug_archive import (
    MAX_PATH_BYTES,
    MAX_PATH_DEPTH,
    MB,
    Refused,
    Tally,
    UnpackLimits,
    admit,
    unpack_slug,
)

PROCFILE = b"web: python3 web.py\n"
TB = 1024 * 1024 * MB


def member(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def pack(*members: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes], fmt: int = 1) -> bytes:
    """A .tar.gz of a Procfile and ``members`` (with their data), in tar format ``fmt``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as archive:
        procfile = member("Procfile", size=len(PROCFILE))
        archive.addfile(procfile, io.BytesIO(PROCFILE))
        for item in members:
            info, data = item if isinstance(item, tuple) else (item, b"")
            if info.isreg():
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


@pytest.fixture(params=["data filter", "no data filter"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test twice: with tarfile's data filter, and without it (Python before 3.11.4)."""
    if request.param == "no data filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no data filter (before 3.11.4)")
    yield request.param


def unpack(tmp_path: Path, data: bytes, limits: UnpackLimits | None = None) -> Path:
    tarball = tmp_path / "upload.tar.gz"
    tarball.write_bytes(data)
    return unpack_slug(tarball, tmp_path / "slugs", limits).path


def refused(tmp_path: Path, data: bytes, limits: UnpackLimits | None = None) -> str:
    """The refusal's message; and nothing of the upload was left behind."""
    with pytest.raises(UserError) as caught:
        unpack(tmp_path, data, limits)
    assert list((tmp_path / "slugs").iterdir()) == []
    return caught.value.message


def test_a_member_announcing_a_terabyte_is_refused_on_its_header(
    tmp_path: Path, python: str
) -> None:
    # The header says 1 TB, the upload has 1 MB of it: refused before a byte is written.
    # Extracting first would fail on the missing data instead, after writing what came.
    header = member("huge.bin", size=TB).tobuf(tarfile.GNU_FORMAT)
    procfile = member("Procfile", size=len(PROCFILE)).tobuf(tarfile.GNU_FORMAT)
    body = procfile + PROCFILE.ljust(512, b"\0") + header + bytes(MB)
    message = refused(tmp_path, gzip.compress(body))
    assert "more than 1024 MB" in message and "--max-unpacked-size" in message


def test_an_upload_that_unpacks_past_the_limit_is_refused_where_it_passes_it(
    tmp_path: Path, python: str
) -> None:
    chunks = [(member(f"data/part-{n}.bin"), bytes(4 * MB)) for n in range(3)]
    upload = pack(*chunks)
    assert len(upload) < MB // 10  # zeros: a tiny upload that would fill 12 MB
    message = refused(tmp_path, upload, UnpackLimits(max_bytes=10 * MB))
    assert "more than 10 MB" in message and "it stopped at data/part-2.bin" in message


def test_an_upload_with_too_many_members_is_refused(tmp_path: Path, python: str) -> None:
    files = [(member(f"f{n}"), b"x") for n in range(20)]
    message = refused(tmp_path, pack(*files), UnpackLimits(max_members=10))
    assert "more than 10 files and directories" in message
    assert "--max-unpacked-files" in message


def test_directories_a_path_makes_count_toward_the_member_limit(
    tmp_path: Path, python: str
) -> None:
    """A directory bomb: 200 members, each 60 levels down its own branch, make 12,000
    directories. Counted as 200 members, they passed a limit of 5,000."""
    deep = "/".join(["a"] * 59)
    bomb = [member(f"d{n}/{deep}", tarfile.DIRTYPE, mode=0o755) for n in range(200)]
    upload = pack(*bomb, fmt=tarfile.PAX_FORMAT)
    assert len(upload) < 20_000
    started = time.monotonic()
    message = refused(tmp_path, upload, UnpackLimits(max_members=5000))
    assert time.monotonic() - started < 20
    assert "more than 5000 files and directories" in message
    assert "--max-unpacked-files; directories made for a path count too" in message
    # Exactly: the Procfile and a/b/c/d are 5 members, a/b/c/d alone makes 3 of them.
    assert refused(tmp_path, pack(member("a/b/c/d")), UnpackLimits(max_members=4))
    assert (
        unpack(tmp_path, pack(member("a/b/c/d")), UnpackLimits(max_members=5)) / "a/b/c/d"
    ).is_file()


TOO_DEEP_OR_LONG = {
    "1,000 levels (Path.mkdir's RecursionError)": "/".join(["a"] * 1000),
    "one level too deep": "/".join(["a"] * (MAX_PATH_DEPTH + 1)),
    "one byte too long": "/".join(["x" * 200] * 6)[: MAX_PATH_BYTES + 1],
    "2,000 members 900 levels down (the reviewer's bomb)": "many",
}


@pytest.mark.parametrize("case", TOO_DEEP_OR_LONG)
def test_a_path_too_deep_or_too_long_is_refused_before_anything_is_made(
    tmp_path: Path, python: str, case: str
) -> None:
    name = TOO_DEEP_OR_LONG[case]
    if name == "many":
        deep = "/".join(["a"] * 899)
        bomb = [member(f"d{n}/{deep}", tarfile.DIRTYPE, mode=0o755) for n in range(2000)]
    else:
        bomb = [member(name, tarfile.DIRTYPE, mode=0o755)]
    upload = pack(*bomb, fmt=tarfile.PAX_FORMAT)
    started = time.monotonic()
    message = refused(tmp_path, upload)
    assert time.monotonic() - started < 20
    assert f"at most {MAX_PATH_BYTES} bytes and {MAX_PATH_DEPTH} levels" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slugs", "upload.tar.gz"]


def test_a_path_at_the_depth_and_length_limits_is_unpacked(tmp_path: Path, python: str) -> None:
    parts = ["a"] * (MAX_PATH_DEPTH - 4) + ["x" * 220] * 3  # a name has at most 255 bytes
    name = "/".join([*parts, "y" * (MAX_PATH_BYTES - len("/".join(parts)) - 1)])
    assert len(name) == MAX_PATH_BYTES and name.count("/") + 1 == MAX_PATH_DEPTH
    assert (unpack(tmp_path, pack((member(name), b"x"), fmt=tarfile.PAX_FORMAT)) / name).is_file()


BAD_MEMBERS = {
    "absolute path": [member("/etc/cron.d/x")],
    "parent path": [member("../outside")],
    "parent inside a path": [member("sub/../../outside")],
    "absolute link": [member("link", tarfile.SYMTYPE, linkname="/etc/passwd")],
    "link climbing out": [member("sub/link", tarfile.SYMTYPE, linkname="../../credentials")],
    "file inside a link": [
        member("sub", tarfile.DIRTYPE, mode=0o755),
        member("link", tarfile.SYMTYPE, linkname="sub"),
        member("link/x"),
    ],
    "chain of links leading out": [
        member("d1/d2", tarfile.DIRTYPE, mode=0o755),
        member("d1/d2/l1", tarfile.SYMTYPE, linkname="../.."),  # the slug itself
        member("l2", tarfile.SYMTYPE, linkname="d1/d2/l1/.."),  # as written, d1: inside
    ],
    "hard link out": [member("hard", tarfile.LNKTYPE, linkname="../../credentials")],
    "hard link to nothing": [member("hard", tarfile.LNKTYPE, linkname="missing")],
    "character device": [member("tty", tarfile.CHRTYPE, devmajor=5, devminor=0)],
    "block device": [member("disk", tarfile.BLKTYPE, devmajor=8, devminor=0)],
    "fifo": [member("pipe", tarfile.FIFOTYPE)],
    "same path twice": [member("web.py"), member("web.py", tarfile.SYMTYPE, linkname="x")],
}


@pytest.mark.parametrize("case", BAD_MEMBERS)
def test_members_a_slug_may_not_hold_are_refused_and_nothing_is_left(
    tmp_path: Path, python: str, case: str
) -> None:
    # refused() also checks that the slug directory is gone, and nothing leaked outside it.
    refused(tmp_path, pack(*BAD_MEMBERS[case]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slugs", "upload.tar.gz"]


def test_a_procfile_linked_through_a_chain_to_the_credentials_is_never_read(
    tmp_path: Path, python: str
) -> None:
    home = tmp_path
    (home / "credentials").write_text("s3cret-token\n")
    chain = [
        member("d1/d2", tarfile.DIRTYPE, mode=0o755),
        member("d1/d2/l1", tarfile.SYMTYPE, linkname="../.."),
        member("l2", tarfile.SYMTYPE, linkname="d1/d2/l1/.."),  # really <home>/slugs
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info in chain:
            archive.addfile(info)
        archive.addfile(member("Procfile", tarfile.SYMTYPE, linkname="l2/../credentials"))
    message = refused(tmp_path, buffer.getvalue())
    assert "s3cret" not in message


def test_sparse_files_are_refused_on_their_header(tmp_path: Path, python: str) -> None:
    gnu = member("old-sparse", tarfile.GNUTYPE_SPARSE)
    assert "sparse" in refused(tmp_path, pack(gnu, fmt=tarfile.GNU_FORMAT))
    pax = member("pax-sparse")
    pax.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.size": "9"}
    assert "sparse" in refused(tmp_path, pack((pax, b"x"), fmt=tarfile.PAX_FORMAT))


def test_an_oversized_extended_header_is_refused_before_it_is_read(
    tmp_path: Path, python: str
) -> None:
    info = member("web.py")
    info.pax_headers = {"comment": "x" * (1 * MB)}
    assert "extended header" in refused(tmp_path, pack((info, b"ok"), fmt=tarfile.PAX_FORMAT))


def test_a_good_upload_unpacks_with_safe_modes_and_no_owner_of_its_own(
    tmp_path: Path, python: str
) -> None:
    upload = pack(
        member("./bin", tarfile.DIRTYPE, mode=0o777),
        (member("./bin/run", mode=0o6777, uid=1234, gid=1234), b"#!/bin/sh\n"),
        member("./bin/run-again", tarfile.LNKTYPE, linkname="bin/run"),
        member("./app/static", tarfile.SYMTYPE, linkname="../bin"),
        (member("app/web.py", mode=0o644), b"print('hi')\n"),
    )
    slug = unpack(tmp_path, upload)
    assert (slug / "app" / "web.py").read_text() == "print('hi')\n"
    assert (slug / "app" / "static" / "run").read_bytes() == b"#!/bin/sh\n"
    assert os.path.samefile(slug / "bin" / "run", slug / "bin" / "run-again")
    run = (slug / "bin" / "run").stat()
    assert run.st_mode & stat.S_IXUSR  # the owner may still run it
    special = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH
    for path in (slug / "bin", slug / "bin" / "run"):
        assert path.stat().st_mode & special == 0, path
    assert run.st_uid == os.geteuid()  # never the archive's 1234


def test_a_missing_procfile_and_a_non_tarball_leave_nothing(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(member("web.py", size=2), io.BytesIO(b"x\n"))
    with pytest.raises(UserError, match="No Procfile"):
        unpack(tmp_path, buffer.getvalue())
    with pytest.raises(BadRequest, match=r"not a readable \.tar\.gz"):
        unpack(tmp_path, b"this is not gzip")
    assert list((tmp_path / "slugs").iterdir()) == []


def test_admit_judges_a_member_from_its_header_alone() -> None:
    tally, limits = Tally(), UnpackLimits(max_bytes=100, max_members=3)
    assert admit(member(".", tarfile.DIRTYPE), tally, limits) is None  # the top directory
    entry = admit(member("./a/b.txt", size=60, mode=0o4775), tally, limits)
    assert entry is not None and (entry.path, entry.mode) == ("a/b.txt", 0o755)
    assert tally.kinds == {"a": "directory", "a/b.txt": "file"}
    with pytest.raises(Refused, match=r"inside a/b\.txt, which it holds as a file"):
        admit(member("a/b.txt/c"), tally, limits)
    with pytest.raises(Refused, match="more than 0 MB"):
        admit(member("c.txt", size=41), tally, limits)


def test_slugignore_removes_what_it_lists_before_the_build_links_as_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the slug's")
    upload = pack(
        (member(".slugignore"), b"# large files\n*.psd\n/media\nlinked\n"),
        (member("art/logo.psd"), b"psd"),
        (member("art/logo.png"), b"png"),
        (member("media/video.mp4"), b"mp4"),
        (member("app/media/keep.txt"), b"kept: /media is anchored at the top"),
        member("linked", tarfile.SYMTYPE, linkname="app"),
    )
    slug = unpack(tmp_path, upload)
    assert not (slug / "art" / "logo.psd").exists() and (slug / "art" / "logo.png").exists()
    assert not (slug / "media").exists()
    assert (slug / "app" / "media" / "keep.txt").exists()
    assert not os.path.lexists(slug / "linked") and (slug / "app").is_dir()
    assert (slug / "Procfile").exists() and (slug / ".slugignore").exists()
