"""git on the server, bounded: a pushed tree counted before it is archived (a 10 kB pack can
name 10^12 files), and every git command on a deadline and killed, with what it started,
when it runs past it or whoever waits for it is cancelled. Real git, real processes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from dynos.errors import PlatformError
from dynos.platform.git_command import git_succeeds, run_git
from dynos.platform.git_push import check_tree
from dynos.platform.slug_archive import MB, Refused, UnpackLimits

pytestmark = pytest.mark.anyio

WIDE = 1000  # entries per tree: WIDE ** 4 files in the bomb


def git(repo: Path, *args: str, data: str = "") -> str:
    env = {"GIT_DIR": str(repo), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    done = subprocess.run(
        ["git", *args], input=data, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def mktree(repo: Path, entries: list[str]) -> str:
    return git(repo, "mktree", data="".join(f"{entry}\n" for entry in entries))


def bomb(repo: Path) -> str:
    """A tree of WIDE ** 4 files, all one blob: five small tree objects."""
    blob = git(repo, "hash-object", "-w", "--stdin", data="x\n")
    tree = mktree(repo, [f"100644 blob {blob}\tf{n:03}" for n in range(WIDE)])
    for _ in range(3):
        tree = mktree(repo, [f"040000 tree {tree}\td{n:03}" for n in range(WIDE)])
    return tree


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def git_children() -> list[psutil.Process]:
    """This test's processes still running git or what git started (``sleep``)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() in ("git", "sleep", "sh") and child.status() != "zombie":
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


async def test_a_tree_of_a_trillion_files_is_refused_at_the_limit_and_git_stopped(
    repo: Path,
) -> None:
    tree = bomb(repo)
    git(repo, "fsck", "--strict", "--no-dangling")  # git itself finds nothing wrong with it
    started = time.monotonic()
    with pytest.raises(Refused, match="more than 100000 files and directories"):
        await check_tree(tree, {"GIT_DIR": str(repo)}, UnpackLimits())
    assert time.monotonic() - started < 30
    assert git_children() == []


async def test_a_tree_is_counted_as_its_upload_would_be(repo: Path) -> None:
    """Directories count, as in an upload; a link's bytes do not; file bytes add up."""
    half = git(repo, "hash-object", "-w", "--stdin", data="y" * (MB // 2 + 1))
    link = git(repo, "hash-object", "-w", "--stdin", data="a" * MB)  # a long target
    sub = mktree(repo, [f"100644 blob {half}\tone", f"120000 blob {link}\tlink"])
    tree = mktree(repo, [f"040000 tree {sub}\tsub", f"100755 blob {half}\ttwo"])
    env = {"GIT_DIR": str(repo)}
    await check_tree(tree, env, UnpackLimits(max_members=4, max_bytes=2 * MB))
    with pytest.raises(Refused, match="more than 3 files and directories"):
        await check_tree(tree, env, UnpackLimits(max_members=3, max_bytes=2 * MB))
    with pytest.raises(Refused, match=r"more than 1 MB .*it stopped at two"):
        await check_tree(tree, env, UnpackLimits(max_members=4, max_bytes=MB))


SLOW = ["-c", "alias.slow=!sleep 61.25", "slow"]  # git runs a shell, which runs sleep


async def test_git_past_its_deadline_is_killed_with_what_it_started(repo: Path) -> None:
    started = time.monotonic()
    with pytest.raises(PlatformError, match="stopped after 1 s"):
        await run_git(SLOW, {"GIT_DIR": str(repo)}, timeout=1)
    with pytest.raises(PlatformError, match="stopped after 1 s"):
        await git_succeeds(SLOW, {"GIT_DIR": str(repo)}, timeout=1)
    assert time.monotonic() - started < 20
    assert git_children() == []


async def test_a_cancelled_git_is_killed_before_the_cancel_is_done(repo: Path) -> None:
    for command in (run_git(SLOW, {"GIT_DIR": str(repo)}), git_succeeds(SLOW, {})):
        task = asyncio.ensure_future(command)
        for _ in range(100):  # until the shell's sleep runs
            await asyncio.sleep(0.05)
            if any(child.name() == "sleep" for child in git_children()):
                break
        assert git_children(), "git never started its alias"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert git_children() == []
