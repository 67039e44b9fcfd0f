"""Handing trees over to a build's or an add-on's user and taking them back, without ever
following a link."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from dynos.backends.isolation import DynoUser
from dynos.platform.ownership import dir_id, hand_over, seal, take_back

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root changes owners")


@root_only
def test_hand_over_and_take_back_follow_no_link(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    user = DynoUser("nobody", nobody.pw_uid, nobody.pw_gid)
    tmp_path.chmod(0o755)
    outside = tmp_path / "root-file"
    outside.write_text("root's")
    outside.chmod(0o644)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_text("x")
    (tree / "sub" / "link").symlink_to(outside)
    (tree / "dirlink").symlink_to(tmp_path)

    hand_over(tree, user)
    assert {p.lstat().st_uid for p in [tree, *tree.rglob("*")]} == {nobody.pw_uid}
    assert outside.stat().st_uid == 0 and tmp_path.stat().st_uid == 0

    # What the user may have made meanwhile: setuid and world-writable files, more links.
    (tree / "sub" / "file").chmod(0o6777)
    (tree / "sub").chmod(0o777)
    os.lchown(tree / "sub" / "link", nobody.pw_uid, nobody.pw_gid)
    take_back(tree)
    for path in [tree, *tree.rglob("*")]:
        info = path.lstat()
        assert info.st_uid == 0 and info.st_gid == 0, path
        if not stat.S_ISLNK(info.st_mode):
            assert stat.S_IMODE(info.st_mode) & 0o7077 == 0, path
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # not made 0600 through the link
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755  # nor this through dirlink


@root_only
def test_a_sealed_tree_is_roots_read_only_and_neither_handed_over_nor_walked(
    tmp_path: Path,
) -> None:
    nobody = pwd.getpwnam("nobody")
    user = DynoUser("nobody", nobody.pw_uid, nobody.pw_gid)
    slug = tmp_path / "slug"
    venv = slug / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n")
    (venv / "bin" / "python").chmod(0o4777)  # setuid and world-writable: both go
    (venv / "lib.py").write_text("x" * 10)
    os.chown(venv / "lib.py", nobody.pw_uid, 1234)  # as a dyno's start may have left it
    (venv / "link").symlink_to(tmp_path)
    (slug / "app.py").write_text("print()")

    sealed = seal(venv)
    assert sealed.bytes == len("#!/bin/sh\n") + 10
    assert sealed.dir == dir_id(venv.lstat())
    assert stat.S_IMODE(venv.stat().st_mode) == 0o700  # closed until its holder opens it
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in venv.rglob("*")}
    assert modes["bin"] == 0o755 and modes["python"] == 0o755 and modes["lib.py"] == 0o644
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in venv.rglob("*")} == {(0, 0)}

    venv.chmod(0o755)
    hand_over(slug, user, keep=(".venv",))
    assert slug.stat().st_uid == (slug / "app.py").stat().st_uid == nobody.pw_uid
    assert {p.lstat().st_uid for p in [venv, *venv.rglob("*")]} == {0}

    # take_back leaves the sealed tree's modes as they are (not walked) ...
    take_back(slug, sealed.dir)
    assert (slug / "app.py").stat().st_uid == 0
    assert stat.S_IMODE((venv / "lib.py").stat().st_mode) == 0o644
    # ... but walks a directory that only has its name.
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("x")
    (other / "f").chmod(0o666)
    take_back(other, sealed.dir)
    assert stat.S_IMODE((other / "f").stat().st_mode) == 0o600
