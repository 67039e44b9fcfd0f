"""Confinement of builds and add-on servers: killing every process, handing trees over and
taking them back without ever following a link."""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from dynos.backends.cgroups import Cgroups
from dynos.backends.isolation import DynoUser
from dynos.core.sizes import DEFAULT_SIZE
from dynos.platform.confinement import Confinement, hand_over, take_back

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root changes owners")


def sleepers(marker: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and p.info["cmdline"][-1] == marker
    ]


def start(confinement: Confinement, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["/bin/sh", "-c", script], start_new_session=True, preexec_fn=confinement.child_setup()
    )


async def gone(marker: str) -> bool:
    for _ in range(100):
        if not sleepers(marker):
            return True
        await asyncio.sleep(0.02)
    return False


def test_kill_all_without_cgroups_reaches_a_detached_descendant() -> None:
    marker = f"{900 + os.getpid() % 97}.25"
    process = start(Confinement(), f"setsid sleep {marker} & exec sleep 600")
    try:
        for _ in range(100):
            if sleepers(marker):
                break
            time.sleep(0.02)
        assert sleepers(marker)
        asyncio.run(Confinement().kill_all(process.pid))
        assert asyncio.run(gone(marker))
    finally:
        process.kill()
        process.wait()


@root_only
def test_kill_all_empties_the_cgroup_even_of_an_orphan() -> None:
    cgroups = Cgroups.detect()
    assert cgroups is not None
    group = cgroups.create("confinement-test", DEFAULT_SIZE)
    confinement = Confinement(None, group)
    marker = f"{900 + os.getpid() % 97}.5"
    # The middle shell exits at once: the sleeper is nobody's descendant, only the cgroup's.
    process = start(confinement, f"sh -c 'setsid sleep {marker} &'; exec sleep 600")
    try:
        for _ in range(100):
            if sleepers(marker):
                break
            time.sleep(0.02)
        [orphan] = sleepers(marker)
        assert orphan.pid in confinement.pids()
        assert orphan.ppid() != process.pid
        asyncio.run(confinement.kill_all(process.pid))
        assert asyncio.run(gone(marker)) and confinement.pids() == set()
    finally:
        process.kill()
        process.wait()
        cgroups.remove(group)
        cgroups.close()


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
