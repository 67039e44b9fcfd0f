"""Building a slug: installing its requirements.txt into ``.venv``, confined and on a deadline.

A slug is a directory under ``<home>/slugs/<id>``, built in place (a virtualenv records its
absolute path, so it cannot be moved after pip ran) and never changed once a release uses it.
A failed build removes its directory: the previous release keeps running, untouched.

A build runs a tenant's code (a dependency's ``setup.py``), so each of its steps runs in a
sandbox (:mod:`dynos.backends.sandbox`), as a dyno does: as root, as the app's own user, in a
cgroup with the limits of the app's largest dyno size, with a private scratch of that size's cap
over /tmp, /dev/shm and every other directory open to all users (gone, and charged to the
build, when the step ends); without root, under a reaper that keeps every process the step
starts, however it detaches. Either way every signal is at its default and the priority is the
workloads'. Its environment is its own, not the server's: PATH, LANG, and HOME and TMPDIR in a
build directory ``<home>/builds/<slug id>`` removed afterwards; only pip's ``PIP_*`` settings
pass through from the server's environment. The slug is handed to the app's user for the build
and taken back by root afterwards (read-only to the app from then on, as
:func:`dynos.backends.isolation.open_slug_to` expects). The rest of the server's home stays
closed to the build: the home and ``slugs/`` may be passed through, not listed, and everything
else in them is root's alone.

A build has a deadline (``--build-timeout``, 15 minutes as on Heroku). When it passes, or
when the client goes away, every process of the build is killed and the build fails. When a
step ends, whatever it left running is killed too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dynos.backends.cgroups import Limits
from dynos.backends.isolation import AppUsers, DynoUser
from dynos.backends.sandbox import Sandbox, Sandboxes
from dynos.core.sizes import DynoSize
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.ownership import hand_over, take_back

BUILD_TIMEOUT = 15 * 60.0  # seconds: Heroku's build time limit
LINE_LIMIT = 1 << 20  # a longer output line is passed on in pieces
DRAIN_TIMEOUT = 1.0  # seconds to read what a finished step left in its pipe


@dataclass(frozen=True)
class Slug:
    id: str
    path: Path
    processes: dict[str, str]

    @property
    def needs_build(self) -> bool:
        return (self.path / "requirements.txt").is_file()


def build_environment(
    work: Path, python: str, server_env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """A build's whole environment: nothing of the server's but pip's settings (an index URL,
    a proxy's certificate) that the operator set for builds."""
    env = {key: value for key, value in server_env.items() if key.startswith("PIP_")}
    path = [os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]
    env.update(
        PATH=os.pathsep.join(path),
        HOME=str(work / "home"),
        TMPDIR=str(work / "tmp"),
        LANG="C.UTF-8",
        PYTHONUNBUFFERED="1",
    )
    return env


def describe_timeout(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    if minutes and not rest:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


@dataclass(frozen=True)
class _Step:
    """What every step of one build shares: where it runs and how it is confined."""

    name: str  # its sandboxes' name
    cwd: Path
    env: dict[str, str]
    size: DynoSize
    user: DynoUser | None
    visible: tuple[Path, ...]  # what its scratch must not hide: the slug, the build directory


class Builder:
    """Runs builds with ``python``, in build directories under ``builds_dir``, each step in a
    sandbox of ``sandboxes`` (the server's); as root (``users`` given) as the app's user."""

    def __init__(
        self,
        python: str,
        builds_dir: Path,
        *,
        sandboxes: Sandboxes | None = None,
        users: AppUsers | None = None,
        timeout: float = BUILD_TIMEOUT,
    ) -> None:
        self.python = python
        self._builds_dir = builds_dir
        self._sandboxes = sandboxes or Sandboxes()
        self._users = users
        self.timeout = timeout

    async def build(self, app_id: str, slug: Slug, size: DynoSize) -> AsyncIterator[str]:
        """Install the slug's requirements.txt into ``.venv``, yielding output lines.

        Raises BuildFailed when a step fails or the deadline passes; the caller removes the
        slug.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        user = self._users.for_app(app_id) if self._users is not None else None
        builds_dir = self._builds_dir
        work = builds_dir / slug.id
        try:
            _make_build_dir(builds_dir, work, user)
            if user is not None:
                hand_over(slug.path, user)
        except OSError as exc:
            await asyncio.to_thread(self._clean_up, slug, work, user)
            raise PlatformError(f"Could not set up the build: {exc}") from exc
        env = build_environment(work, self.python)
        step = _Step(f"build-{slug.id}", slug.path, env, size, user, (slug.path, work))
        venv = slug.path / ".venv"
        pip = (
            *(str(venv / "bin" / "python"), "-m", "pip", "install"),
            *("--disable-pip-version-check", "--progress-bar", "off", "-r", "requirements.txt"),
        )
        try:
            yield "-----> Python app detected"
            yield (
                f"-----> Building with the limits of a {size.name} dyno, for up to "
                f"{describe_timeout(self.timeout)}"
            )
            yield f"-----> Creating virtualenv with {self.python}"
            venv_step = (self.python, "-m", "venv", str(venv))
            async for line in self._run(venv_step, step, deadline):
                yield line
            yield "-----> Installing requirements with pip"
            async for line in self._run(pip, step, deadline):
                yield "       " + line
        finally:
            await asyncio.to_thread(self._clean_up, slug, work, user)

    def _clean_up(self, slug: Slug, work: Path, user: DynoUser | None) -> None:
        """After the build's processes are gone: the slug back to root, the build directory
        removed."""
        shutil.rmtree(work, ignore_errors=True)
        if user is not None and slug.path.exists():
            take_back(slug.path)

    def _sandbox(self, step: _Step) -> Sandbox:
        sandboxes = self._sandboxes
        try:
            return sandboxes.prepare(
                step.name,
                limits=Limits.of(step.size),
                user=step.user,
                scratch_bytes=sandboxes.scratch_for(step.size),
                visible=step.visible,
            )
        except OSError as exc:
            raise PlatformError(f"Could not set up the build's limits: {exc}") from exc

    async def _run(self, argv: tuple[str, ...], step: _Step, deadline: float) -> AsyncIterator[str]:
        """Run one step, yielding its output lines; BuildFailed when it fails or the deadline
        passes. Every process of the step is gone when this returns or raises."""
        sandbox = self._sandbox(step)
        try:
            process = await sandbox.spawn(
                argv,
                cwd=step.cwd,
                env=step.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=LINE_LIMIT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PlatformError(f"Could not start the build: {exc}") from exc

        async def reap() -> int:
            status = await process.wait()
            await sandbox.finish()  # what the step left running, and its cgroup
            return status

        reaper = asyncio.create_task(reap())
        assert process.stdout is not None
        try:
            async for raw in _output(process.stdout, reaper, deadline):
                yield raw.decode("utf-8", "replace").rstrip()
            remaining = deadline - asyncio.get_running_loop().time()
            await asyncio.wait({reaper}, timeout=max(0.0, remaining))
            if not reaper.done():
                raise TimeoutError
        except TimeoutError:
            raise BuildFailed(
                f"Build timed out after {describe_timeout(self.timeout)} (the server's "
                "--build-timeout): every process of it was stopped. Make the build faster "
                "and deploy again; the previous release keeps running."
            ) from None
        finally:
            if not reaper.done():  # the deadline, or the client went away
                sandbox.kill()
                await asyncio.shield(reaper)
        status = reaper.result()
        if status != 0:
            raise BuildFailed(
                f"Build failed: {Path(argv[0]).name} {' '.join(argv[1:3])} exited with status "
                f"{status}. Fix the error above and deploy again; the previous release keeps "
                "running."
            )


async def _output(
    stream: asyncio.StreamReader, reaper: asyncio.Task[int], deadline: float
) -> AsyncIterator[bytes]:
    """The step's output, a line at a time, until its end; TimeoutError past ``deadline``.
    Once the step has ended, a pipe that stays open (held by a process that escaped the
    kill) is read for DRAIN_TIMEOUT more, no longer."""
    loop = asyncio.get_running_loop()
    while True:
        read = asyncio.ensure_future(_read_line(stream))
        try:
            if not reaper.done():
                remaining = max(0.0, deadline - loop.time())
                await asyncio.wait({read, reaper}, timeout=remaining, return_when="FIRST_COMPLETED")
                if not read.done() and not reaper.done():
                    raise TimeoutError
            if not read.done():
                remaining = max(0.0, deadline - loop.time())
                await asyncio.wait({read}, timeout=min(DRAIN_TIMEOUT, remaining))
                if not read.done():
                    return
            raw = read.result()
        finally:
            read.cancel()
        if not raw:
            return
        yield raw


async def _read_line(stream: asyncio.StreamReader) -> bytes:
    try:
        return await stream.readline()
    except ValueError:  # a line longer than LINE_LIMIT: take what is buffered
        return await stream.read(LINE_LIMIT)


def _make_build_dir(builds_dir: Path, work: Path, user: DynoUser | None) -> None:
    """``<home>/builds/<slug id>`` with ``home`` and ``tmp`` in it, the build user's alone;
    ``builds/`` itself may be passed through, not listed."""
    builds_dir.mkdir(mode=0o711, exist_ok=True)
    if user is not None:
        builds_dir.chmod(0o711)
    for path in (work, work / "home", work / "tmp"):
        path.mkdir(mode=0o700)
        if user is not None:
            os.chown(path, user.uid, user.gid)
