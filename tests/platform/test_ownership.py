"""Handing trees over to a build's or an add-on's user and taking them back, without ever
following a link."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from dynos.backends.isolation import DynoUser
from dynos.platform.ownership import hand_over, take_back

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
