"""Running git on the server: an environment that reads no user or system config, and
one command to its end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from dynos.errors import PlatformError

# What git reads of the server's environment: nothing but these (no user or system config).
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


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


async def run_git(args: list[str], env: Mapping[str, str] | None = None) -> bytes:
    """``git args`` to its end: its output; PlatformError with what it said if it failed."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_env(env or {}),
        )
    except OSError as exc:
        raise PlatformError(f"Cannot run git (is it installed?): {exc.strerror}.") from exc
    out, err = await process.communicate()
    if process.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()
        raise PlatformError(f"git {args[0]} failed: {said[-1] if said else process.returncode}")
    return out


async def git_succeeds(args: list[str], env: Mapping[str, str]) -> bool:
    """Whether ``git args`` exits 0 (what it prints is not kept)."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=git_env(env),
        )
    except OSError as exc:
        raise PlatformError(f"Cannot run git (is it installed?): {exc.strerror}.") from exc
    return await process.wait() == 0
