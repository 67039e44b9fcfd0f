"""Running git on the server: an environment that reads no user or system config, and
one command to its end, on a deadline, killed (with whatever it started) when whoever
waits for it stops waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator, Mapping

from dynos.errors import PlatformError

# What git reads of the server's environment: nothing but these (no user or system config).
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
# The longest one git command may run. What the server runs on a push is bounded before it
# starts (a tree is counted before it is archived: git_push.py), so this is a backstop
# against what was not foreseen, long enough to archive 1 GB of files on a slow disk.
GIT_DEADLINE = 300.0


def git_env(base: Mapping[str, str], *config: tuple[str, str]) -> dict[str, str]:
    """An environment for git: ``base``, the server's PATH and locale, no global or system
    config, and ``config`` as ``git -c`` would give it (and pass on to the processes git
    starts, hooks included)."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.update(base)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


@contextlib.asynccontextmanager
async def running_git(
    args: list[str], env: Mapping[str, str] | None = None, stdout: int = PIPE, stderr: int = PIPE
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``git args`` started, with no input; ended when the block is left however it is left
    (an error, a deadline, the task cancelled): git and whatever it started (its own session,
    so a filter such as ``gzip`` is reached too) are killed and reaped before the block is
    done, so no git outlives what asked for it, nor a lock that was held meanwhile."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=git_env(env or {}),
            start_new_session=True,
        )
    except OSError as exc:
        raise PlatformError(f"Cannot run git (is it installed?): {exc.strerror}.") from exc
    try:
        yield process
    finally:
        if process.returncode is None:  # not reaped yet: its pid is still its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            # Shielded: a second cancel must not leave it unreaped (it dies at once anyway).
            await asyncio.shield(process.wait())


def too_slow(args: list[str], timeout: float) -> PlatformError:
    return PlatformError(
        f"git {args[0]} was stopped after {timeout:.0f} s (the server's limit for one git "
        "command): push a smaller tree, or ask the server's operator to look at its log."
    )


async def run_git(
    args: list[str], env: Mapping[str, str] | None = None, timeout: float = GIT_DEADLINE
) -> bytes:
    """``git args`` to its end, at most ``timeout`` seconds: its output; PlatformError with
    what it said if it failed or took longer (it is then killed)."""
    async with running_git(args, env) as process:
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            raise too_slow(args, timeout) from None
    if process.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()
        raise PlatformError(f"git {args[0]} failed: {said[-1] if said else process.returncode}")
    return out


async def git_succeeds(
    args: list[str], env: Mapping[str, str], timeout: float = GIT_DEADLINE
) -> bool:
    """Whether ``git args`` exits 0 within ``timeout`` seconds (what it prints is not kept);
    PlatformError if it took longer (it is then killed)."""
    async with running_git(args, env, DEVNULL, DEVNULL) as process:
        try:
            return await asyncio.wait_for(process.wait(), timeout) == 0
        except TimeoutError:
            raise too_slow(args, timeout) from None
