"""A first build's own uv cache: out of its user's reach once uv is done, then kept as the
app's by a copy that shares no file with the slug; and uv's binary linked, not copied, for
the app's user when nobody but root can change it."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from dynos.platform.build_cache import BuildCache
from dynos.platform.pythons import HostPythons

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root changes owners")


def inodes(root: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_dev, p.lstat().st_ino) for p in root.rglob("*") if p.is_file()}


@root_only
def test_a_builds_own_downloads_are_kept_as_copies_roots_and_shared_with_no_slug(
    tmp_path: Path,
) -> None:
    nobody = pwd.getpwnam("nobody")
    venv = tmp_path / "slug" / ".venv"
    downloads = venv / "uv-cache"
    (downloads / "archive-v0" / "abc").mkdir(parents=True)
    wheel_file = downloads / "archive-v0" / "abc" / "six.py"
    wheel_file.write_text("# six\n")
    (venv / "lib").mkdir()
    os.link(wheel_file, venv / "lib" / "six.py")  # as uv links it into the environment
    for path in [downloads, *downloads.rglob("*")]:
        os.lchown(path, nobody.pw_uid, nobody.pw_gid)  # the build's user made them
    cache = BuildCache(tmp_path / "build-cache" / "app")

    cache.take_in(downloads)
    assert not downloads.exists()  # out of the environment, before anything else runs
    incoming = cache.root / "incoming"
    assert incoming.stat().st_uid == 0 and stat.S_IMODE(incoming.stat().st_mode) == 0o700
    assert (incoming / "uv" / "archive-v0" / "abc" / "six.py").exists()
    assert not cache.has_downloads()  # not the app's yet

    cache.keep_downloads()
    assert not incoming.exists()
    assert cache.has_downloads()
    assert (cache.uv / "archive-v0" / "abc" / "six.py").read_text() == "# six\n"
    assert not inodes(cache.uv) & inodes(venv)  # handing uv/ over hands over no slug file
    assert (venv / "lib" / "six.py").stat().st_nlink == 1
    for path in [cache.uv, *cache.uv.rglob("*")]:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (0, 0), path
        assert stat.S_IMODE(info.st_mode) & 0o7077 == 0, path


@root_only
def test_a_link_left_where_the_downloads_were_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("root's")
    downloads = tmp_path / "slug" / ".venv" / "uv-cache"
    downloads.parent.mkdir(parents=True)
    downloads.symlink_to(secret)
    cache = BuildCache(tmp_path / "build-cache" / "app")

    cache.take_in(downloads)  # the link itself moves
    cache.keep_downloads()
    assert not cache.uv.exists() and not (cache.root / "incoming").exists()
    assert (secret / "key").read_text() == "root's"

    # A link in place of the environment itself: nothing is taken from where it points.
    elsewhere = tmp_path / "another-slug" / ".venv"
    (elsewhere / "uv-cache").mkdir(parents=True)
    venv = tmp_path / "slug2" / ".venv"
    venv.parent.mkdir()
    venv.symlink_to(elsewhere)
    cache.take_in(venv / "uv-cache")
    cache.keep_downloads()
    assert (elsewhere / "uv-cache").is_dir() and not cache.uv.exists()


def test_nothing_taken_in_keeps_nothing(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "app")
    cache.keep_downloads()
    assert not cache.has_downloads()
    cache.take_in(tmp_path / "missing")  # uv never made it: nothing to keep, no error
    cache.keep_downloads()
    assert not cache.has_downloads() and not (cache.root / "incoming").exists()


@root_only
def test_uv_for_the_apps_user_is_a_link_when_only_root_can_change_it(tmp_path: Path) -> None:
    closed = tmp_path / "closed"  # as /root is: the app's user cannot reach inside
    closed.mkdir(mode=0o700)
    tool = closed / "uv"
    tool.write_bytes(b"\x7fELF uv")
    tool.chmod(0o755)
    pythons = HostPythons(tmp_path / "pythons", shared=True, uv=str(tool))

    usable = Path(pythons.usable_tool(str(tool)))
    assert usable.parent == tmp_path / "pythons" / "bin"
    assert usable.stat().st_ino == tool.stat().st_ino  # linked: no copy of its megabytes
    assert pythons.usable_tool(str(tool)) == str(usable)  # and kept

    other = closed / "uv-other"  # writable by its group: not trusted as it is
    other.write_bytes(b"\x7fELF other")
    other.chmod(0o775)
    copied = Path(pythons.usable_tool(str(other)))
    assert copied.stat().st_ino != other.stat().st_ino
    assert stat.S_IMODE(copied.stat().st_mode) == 0o755 and copied.stat().st_uid == 0
    assert stat.S_IMODE(other.stat().st_mode) == 0o775  # the original is left as it was
