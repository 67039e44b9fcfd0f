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
:func:`dynos.backends.isolation.open_slug_to` expects), but for its environment once sealed
(:mod:`dynos.platform.python_build`): root's already, read-only to the build, not walked.
The rest of the server's home stays closed to the build: the home and ``slugs/`` may be
passed through, not listed, and everything else in them is root's alone.

A build has a deadline (``--build-timeout``, 15 minutes as on Heroku). When it passes, or
when the client goes away, every process of the build is killed and the build fails. When a
step ends, whatever it left running is killed too.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from dynos.platform.build_cache import BuildCache
from dynos.platform.ownership import Sealed, dir_id, hand_over, seal, take_back
from dynos.platform.python_build import (
    COLLECTSTATIC,
    COLLECTSTATIC_FAILED,
    OWN_UV_CACHE,
    build_environment,
    collectstatic_disabled,
    django_app,
    find_uv,
    hook,
    install_commands,
    keep_downloads,
    locked_requirements,
    plan_build,
    python_app,
    remove_uploaded_venv,
    save_cache,
    step_environment,
)
from dynos.platform.pythons import HostPythons
from dynos.platform.step_output import LINE_LIMIT, step_output

BUILD_TIMEOUT = 15 * 60.0  # seconds: Heroku's build time limit


@dataclass(frozen=True)
class Slug:
    id: str
    path: Path
    processes: dict[str, str]

    @property
    def needs_build(self) -> bool:
        return python_app(self.path)


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
    """Runs builds in build directories under ``builds_dir``, each step in a sandbox of
    ``sandboxes`` (the server's); as root (``users`` given) as the app's user. ``python`` is
    the interpreter of last resort (the server's); ``pythons`` finds the host's others,
    ``cache_dir`` holds each app's build cache, ``uv`` is uv's binary."""

    def __init__(
        self,
        python: str,
        builds_dir: Path,
        *,
        sandboxes: Sandboxes | None = None,
        users: AppUsers | None = None,
        timeout: float = BUILD_TIMEOUT,
        cache_dir: Path | None = None,
        pythons: HostPythons | None = None,
        uv: str | None = None,
    ) -> None:
        self.python = python
        self._builds_dir = builds_dir
        self._sandboxes = sandboxes or Sandboxes()
        self._users = users
        self.timeout = timeout
        self.cache_dir = cache_dir or builds_dir.parent / "build-cache"
        self.uv = uv or find_uv()
        self._saving: dict[str, asyncio.Task[None]] = {}  # cache saves under way, by app
        self._venv_bytes: dict[str, int] = {}  # by slug id, until its release reads it
        self._locks: dict[str, asyncio.Lock] = {}  # one build of an app at a time
        self.pythons = pythons or HostPythons(
            builds_dir.parent / "pythons", shared=users is not None, uv=self.uv
        )

    async def forget(self, app_id: str) -> None:
        """The app was destroyed: its build cache goes (once a save under way is done)."""
        await self._saved(app_id)
        await asyncio.to_thread(BuildCache(self.cache_dir / app_id).discard)
        self._locks.pop(app_id, None)

    async def _saved(self, app_id: str) -> None:
        """Wait for the app's last build to have saved its cache."""
        saving = self._saving.pop(app_id, None)
        if saving is not None:
            await asyncio.shield(saving)

    async def build(
        self,
        app_id: str,
        slug: Slug,
        size: DynoSize,
        config: Mapping[str, str] | None = None,
    ) -> AsyncIterator[str]:
        """One build of an app at a time (they share its cache): see :meth:`_build`."""
        lock = self._locks.setdefault(app_id, asyncio.Lock())
        if lock.locked():
            yield "-----> Waiting for the app's other build to finish"
        async with lock:
            async for line in self._build(app_id, slug, size, config):
                yield line

    async def _build(
        self,
        app_id: str,
        slug: Slug,
        size: DynoSize,
        config: Mapping[str, str] | None,
    ) -> AsyncIterator[str]:
        """Build the slug as Heroku's Python buildpack would, yielding output lines:
        Python, the dependencies into ``.venv`` with uv, collectstatic, the hooks
        (:mod:`dynos.platform.python_build`). ``config``: the app's config vars, which the
        app's build steps see.

        Raises BuildFailed when a step fails or the deadline passes; the caller removes the
        slug.
        """
        config = dict(config or {})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        user = self._users.for_app(app_id) if self._users is not None else None
        builds_dir = self._builds_dir
        work = builds_dir / slug.id
        cache = BuildCache(self.cache_dir / app_id)
        await self._saved(app_id)
        yield "-----> Python app detected"
        yield (
            f"-----> Building with the limits of a {size.name} dyno, for up to "
            f"{describe_timeout(self.timeout)}"
        )
        if self.uv is None:
            raise BuildFailed(
                "uv is not installed on the server, and builds install with it: install "
                "dynos with its dependencies (pip install uv)."
            )
        if remove_uploaded_venv(slug.path):
            yield "-----> Removed the upload's .venv: the build makes the slug's own"
        hooks = {name: hook(slug.path, name) for name in ("pre_compile", "post_compile")}
        has_hooks = any(command is not None for command in hooks.values())
        # Side by side: uv's binary for the app's user (a copy once per server at worst),
        # and the plan (the first on a server asks each host interpreter its version).
        uv, plan = await asyncio.gather(
            asyncio.to_thread(self.pythons.usable_tool, self.uv),
            asyncio.to_thread(plan_build, slug.path, self.pythons, cache, has_hooks),
        )
        for line in plan.lines:
            yield line
        requirements = work / "requirements.txt"
        venv = slug.path / ".venv"
        sealed: Sealed | None = None  # the .venv, once root's and read-only to the build
        pins = await asyncio.to_thread(locked_requirements, plan, slug.path)
        # Nothing downloaded yet: a uv cache of the build's own, in the new environment (on
        # its mount, so uv links from it), out of it once uv is done (BuildCache.take_in).
        own = not plan.restore and not cache.has_downloads()
        downloads = venv / OWN_UV_CACHE if own else None
        # A restored environment needs no download: the app's uv cache waits.
        uv_cache = downloads or (work / "tmp" / "uv" if plan.restore else cache.uv)
        app_uv = (cache.uv,) if uv_cache == cache.uv else ()  # handed to the build
        try:
            _make_build_dir(builds_dir, work, user)
            slug.path.chmod(0o700)  # the build's alone (a sealed .venv is readable by all)
            if pins is not None:
                requirements.write_text("\n".join(pins) + "\n")
                requirements.chmod(0o644)
            if plan.restore:
                yield "-----> Restoring cache"
                restored = await asyncio.to_thread(cache.restore, venv)
                if plan.reuse and restored.sealed and user is not None:
                    sealed = Sealed(dir_id(venv.lstat()), restored.bytes)
            if app_uv:
                cache.open_for(user)
            if user is not None:
                keep = (".venv",) if sealed is not None else ()
                await asyncio.to_thread(hand_over, slug.path, user, keep)
        except OSError as exc:
            await asyncio.to_thread(self._clean_up, slug, work, user, cache, None, None)
            raise PlatformError(f"Could not set up the build: {exc}") from exc
        base = build_environment(work, self.python)
        env = step_environment(base, config, slug.path, plan, uv_cache, own_cache=own)
        self.pythons.open_dir()
        visible = (slug.path, work, self.pythons.dir, *app_uv)
        step = _Step(f"build-{slug.id}", slug.path, env, size, user, visible)
        built = kept_downloads = False
        try:
            if hooks["pre_compile"] is not None:
                yield "-----> Running pre-compile hook"
                async for line in self._run(hooks["pre_compile"], step, deadline):
                    yield "       " + line
            if sealed is not None:
                yield (
                    f"-----> {plan.manager.file} ({plan.manager.name}) is unchanged since the "
                    "cached environment was installed: nothing to install"
                )
            else:
                yield (
                    f"-----> Installing dependencies with uv from {plan.manager.file} "
                    f"({plan.manager.name})"
                )
                for command in install_commands(plan, uv, slug.path, requirements, own):
                    async for line in self._run(command, step, deadline):
                        yield "       " + line
                if downloads is not None:  # before any more of the app's code runs
                    await asyncio.to_thread(cache.take_in, downloads)
                    # Taken: a hook's own uv run downloads elsewhere, and what it leaves in
                    # the environment is its own (a second take_in would replace these).
                    downloads = None
                    step.env.update(UV_CACHE_DIR=str(work / "tmp" / "uv"), UV_LINK_MODE="copy")
                    kept_downloads = True
                if user is not None and not has_hooks:  # only uv wrote it: keep it so
                    sealed = await asyncio.to_thread(seal, venv)
                    venv.chmod(0o755)
            if django_app(slug.path):
                if collectstatic_disabled(config):
                    yield "-----> Skipping Django collectstatic since DISABLE_COLLECTSTATIC is set"
                else:
                    yield "-----> $ python manage.py collectstatic --noinput"
                    run = self._run(COLLECTSTATIC, step, deadline, failed=COLLECTSTATIC_FAILED)
                    async for line in run:
                        yield "       " + line
            if hooks["post_compile"] is not None:
                yield "-----> Running post-compile hook"
                async for line in self._run(hooks["post_compile"], step, deadline):
                    yield "       " + line
            built = True
        finally:
            clean_up = (slug, work, user, cache, sealed, downloads)
            intact = await asyncio.to_thread(self._clean_up, *clean_up)
            if (downloads is not None or kept_downloads) and not built:  # kept all the same
                self._saving[app_id] = asyncio.create_task(keep_downloads(cache))
        if intact and sealed is not None and sealed.bytes is not None:  # size known
            self._venv_bytes[slug.id] = sealed.bytes
        # The copy is made while the release goes out: the app's next build waits for it.
        self._saving[app_id] = asyncio.create_task(save_cache(cache, slug.path, plan, intact))
        yield "-----> Saving cache"

    def venv_bytes(self, slug_id: str) -> dict[str, int]:
        """The slug's ``.venv`` size if known (sealed: unchanged since), for ``slug_size``."""
        size = self._venv_bytes.pop(slug_id, None)
        return {".venv": size} if size is not None else {}

    def _clean_up(
        self,
        slug: Slug,
        work: Path,
        user: DynoUser | None,
        cache: BuildCache,
        env: Sealed | None,
        downloads: Path | None,
    ) -> bool:
        """After the build's processes are gone: the slug and uv's cache back to root (the
        build's own ``downloads`` out of its reach, a rename), the build directory removed.
        True when the slug's ``.venv`` is still the sealed ``env`` (not walked: nothing in it
        was the build's to change, only moving it whole)."""
        if downloads is not None and os.path.lexists(downloads):  # uv failed
            cache.take_in(downloads)
        shutil.rmtree(work, ignore_errors=True)
        cache.close(user)
        if user is None or not slug.path.exists():
            return False
        take_back(slug.path, env.dir if env is not None else None)
        with contextlib.suppress(FileNotFoundError):
            now = (slug.path / ".venv").lstat()
            return env is not None and now.st_uid == 0 and dir_id(now) == env.dir
        return False

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

    async def _run(
        self, argv: tuple[str, ...], step: _Step, deadline: float, failed: str | None = None
    ) -> AsyncIterator[str]:
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
            async for raw in step_output(process.stdout, reaper, deadline):
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
        if status != 0 and failed is not None:
            raise BuildFailed(failed)
        if status != 0:
            raise BuildFailed(
                f"Build failed: {Path(argv[0]).name} {' '.join(argv[1:3])} exited with status "
                f"{status}. Fix the error above and deploy again; the previous release keeps "
                "running."
            )


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
