"""Building a slug: installing its requirements.txt into ``.venv``, confined and on a deadline.

A slug is a directory under ``<home>/slugs/<id>``, built in place (a virtualenv records its
absolute path, so it cannot be moved after pip ran) and never changed once a release uses it.
A failed build removes its directory: the previous release keeps running, untouched.

A build runs a tenant's code (a dependency's ``setup.py``), so as root it runs as the app's
own user, in a cgroup with the limits of the app's largest dyno size, at the workloads'
priority (:mod:`dynos.platform.confinement`). Its environment is its own, not the server's:
PATH, LANG, and HOME and TMPDIR in a build directory ``<home>/builds/<slug id>`` removed
afterwards; only pip's ``PIP_*`` settings pass through from the server's environment. The slug
is handed to the app's user for the build and taken back by root afterwards (read-only to
the app from then on, as :func:`dynos.backends.isolation.open_slug_to` expects). The rest of
the server's home stays closed to the build: the home and ``slugs/`` may be passed through,
not listed, and everything else in them is root's alone.

A build has a deadline (``--build-timeout``, 15 minutes as on Heroku). When it passes, or
when the client goes away, every process of the build is killed and the build fails. When a
step ends, whatever it left running is killed too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dynos.backends.cgroups import Cgroups, DynoCgroup
from dynos.backends.isolation import AppUsers, DynoUser
from dynos.core.sizes import DynoSize
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.confinement import Confinement, hand_over, take_back

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


class Builder:
    """Runs builds with ``python``, in build directories under ``builds_dir``; as root (``users``
    and ``cgroups`` given), each as its app's user in a cgroup of its own."""

    def __init__(
        self,
        python: str,
        builds_dir: Path,
        *,
        users: AppUsers | None = None,
        cgroups: Cgroups | None = None,
        timeout: float = BUILD_TIMEOUT,
    ) -> None:
        self.python = python
        self._builds_dir = builds_dir
        self._users = users
        self._cgroups = cgroups
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
        group: DynoCgroup | None = None
        try:
            _make_build_dir(builds_dir, work, user)
            if user is not None:
                hand_over(slug.path, user)
            if self._cgroups is not None:
                group = self._cgroups.create(f"build-{slug.id}", size)
        except OSError as exc:
            await asyncio.to_thread(self._clean_up, slug, work, user, None)
            raise PlatformError(f"Could not set up the build: {exc}") from exc
        confinement = Confinement(user, group)
        env = build_environment(work, self.python)
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
            async for line in self._run(venv_step, slug.path, env, confinement, deadline):
                yield line
            yield "-----> Installing requirements with pip"
            async for line in self._run(pip, slug.path, env, confinement, deadline):
                yield "       " + line
        finally:
            await asyncio.to_thread(self._clean_up, slug, work, user, group)

    def _clean_up(
        self, slug: Slug, work: Path, user: DynoUser | None, group: DynoCgroup | None
    ) -> None:
        """After the build's processes are gone: the slug back to root, the build directory
        and the cgroup removed."""
        if group is not None and self._cgroups is not None:
            self._cgroups.remove(group)
        shutil.rmtree(work, ignore_errors=True)
        if user is not None and slug.path.exists():
            take_back(slug.path)

    async def _run(
        self,
        argv: tuple[str, ...],
        cwd: Path,
        env: dict[str, str],
        confinement: Confinement,
        deadline: float,
    ) -> AsyncIterator[str]:
        """Run one step, yielding its output lines; BuildFailed when it fails or the deadline
        passes. Every process of the step is gone when this returns or raises."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its process group is the step (without cgroups)
            limit=LINE_LIMIT,
            preexec_fn=confinement.child_setup(),
        )

        async def reap() -> int:
            status = await process.wait()
            await confinement.kill_all(process.pid)  # what the step left running
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
                await confinement.kill_all(process.pid)
                await reaper
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
