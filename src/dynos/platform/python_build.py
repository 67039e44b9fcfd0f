"""A Python app's build, step by step, as Heroku's Python buildpack makes it; installs by uv.

1. What the app asks for (root reads its files; :mod:`dynos.core.python_build` decides): the
   package manager, the Python version and why, the build cache's key.
2. An interpreter from the host (:mod:`dynos.platform.pythons`), or the build fails with
   one line saying what was asked for, what the host has, and how to fix it.
3. The cached environment when its key is the same (nothing to install), else a new one.
   When uv would have nothing to decide (:func:`dynos.core.python_build.reuse_environment`)
   uv does not run at all and the environment stays sealed: root's, read-only to the build.
4. In the sandbox, as the app's user, with the app's config vars: ``bin/pre_compile``, the
   virtualenv and the install, ``manage.py collectstatic --noinput`` when the app is Django's
   (unless ``DISABLE_COLLECTSTATIC``), ``bin/post_compile``. Without hooks the environment is
   sealed once uv is done (:func:`dynos.platform.ownership.seal`): collectstatic runs the
   app's code, which may read it, not change it; the cache can then trust it as uv made it.
5. The environment kept in the cache for the next build.

The virtualenv is the slug's ``.venv`` (relocatable, so a cached copy works in a new slug),
first on every dyno's PATH.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dynos.core.python_build import (
    PIP,
    PIPENV,
    POETRY,
    UV,
    Interpreter,
    PackageManager,
    PythonRequest,
    cache_changes,
    cache_key,
    choose_interpreter,
    detect_package_manager,
    format_version,
    no_interpreter,
    pipfile_lock_requirements,
    poetry_lock_requirements,
    requested_python,
    reuse_environment,
)
from dynos.errors import BuildFailed
from dynos.platform.build_cache import BuildCache
from dynos.platform.pythons import NETWORK_VARIABLES, HostPythons

log = logging.getLogger(__name__)

MAX_READ = 16 * 1024 * 1024  # a lock file larger than this is no lock file
HOST_PLATFORM = f"{os.uname().sysname}-{os.uname().machine}".lower()  # in the cache's key
VERSION_FILES = ("runtime.txt", ".python-version", PIPENV.file)
COLLECTSTATIC = ("python", "manage.py", "collectstatic", "--noinput")
OWN_UV_CACHE = "uv-cache"  # a first build's own uv cache, in the new .venv while uv runs
# Config vars the build's own settings win over: where things are, what runs, what loads.
NOT_FROM_CONFIG = frozenset(
    {"PATH", "HOME", "TMPDIR", "PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "LD_PRELOAD"}
    | {"LD_LIBRARY_PATH", "PYTHONSTARTUP", "PYTHONUSERBASE"}
)


@dataclass
class Plan:
    """What a build decided before running anything of the app's."""

    manager: PackageManager
    request: PythonRequest
    interpreter: Interpreter
    key: dict[str, str]
    restore: bool  # the cache's environment serves this build as it is
    reuse: bool  # ... sealed, read-only, and uv does not run (reuse_environment)
    project: str | None = None  # a uv project's name, from its pyproject.toml
    lines: list[str] = field(default_factory=list)  # what deciding it says


def python_app(slug: Path) -> bool:
    """Whether the slug is a Python app to build: it has a package manager's file (a Pipfile
    alone too, for the error that says to lock it)."""
    names = {"requirements.txt", "uv.lock", "poetry.lock", "Pipfile.lock", "Pipfile"}
    return any((slug / name).is_file() for name in names)


def plan_build(slug: Path, pythons: HostPythons, cache: BuildCache, hooks: bool) -> Plan:
    """Read what the app asks for and settle the interpreter and the cache (as root, off the
    event loop); ``hooks``: the app has a ``bin/pre_compile`` or ``bin/post_compile``. Raises
    BuildFailed with what to change."""
    names = {entry.name for entry in os.scandir(slug) if entry.is_file(follow_symlinks=False)}
    manager = detect_package_manager(names)
    files = {name: read_app_file(slug / name) for name in VERSION_FILES if name in names}
    request = requested_python(files, manager)
    lines = []
    found = pythons.find()
    chosen = choose_interpreter(request, found)
    if chosen is None:
        downloaded, why = pythons.download(request)
        if downloaded is None:
            raise BuildFailed(no_interpreter(request, found, why))
        chosen = downloaded
        lines.append(f"-----> Downloaded Python {format_version(chosen.version)} with uv")
    if request.version is None:
        lines.append(
            "-----> No Python version was specified. Using the newest Python on this server: "
            f"{format_version(chosen.version)}"
        )
    else:
        lines.append(f"-----> Using Python {request.describe()} specified in {request.origin}")
    interpreter = pythons.usable(chosen)
    where = f" from {chosen.source}" if chosen.source != "PATH" else ""
    lines.append(f"-----> Python {format_version(interpreter.version)}{where}: {interpreter.path}")
    dependencies = read_app_file(slug / manager.file)
    key = cache_key(interpreter, manager, dependencies.encode(), HOST_PLATFORM)
    cached = cache.key()
    reasons = cache_changes(cached, key)
    if reasons:
        lines.append("-----> Discarding cache since:")
        lines += [f"       - {reason}" for reason in reasons]
    project = project_name(slug) if manager == UV else None
    restore = cached == key
    reuse = reuse_environment(restore, restore and cache.sealed(), hooks, manager, dependencies)
    return Plan(manager, request, interpreter, key, restore, reuse, project, lines)


def project_name(slug: Path) -> str | None:
    """The ``[project] name`` of the app's pyproject.toml, if it names one."""
    try:
        data = tomllib.loads(read_app_file(slug / "pyproject.toml"))
    except (BuildFailed, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name")
    return name if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._-]+", name) else None


def read_app_file(path: Path) -> str:
    """A file of the app, as text; a link or a huge file is refused (root reads it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BuildFailed(f"Cannot read {path.name}: {exc.strerror}.") from exc
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_READ + 1)
    if len(data) > MAX_READ:
        raise BuildFailed(f"{path.name} is over 16 MB: that is no lock file.")
    return data.decode("utf-8", "replace")


def find_uv() -> str | None:
    """uv's binary, from the ``uv`` package installed with dynos."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return shutil.which("uv")


def build_environment(
    work: Path, python: str, server_env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """A build's whole environment: nothing of the server's but the settings the operator
    set for builds: pip's and uv's (an index URL), certificates and proxies."""
    env = {
        key: value
        for key, value in server_env.items()
        if key.startswith(("PIP_", "UV_")) or key.upper() in NETWORK_VARIABLES
    }
    path = [os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]
    env.update(
        PATH=os.pathsep.join(path),
        HOME=str(work / "home"),
        TMPDIR=str(work / "tmp"),
        LANG="C.UTF-8",
        PYTHONUNBUFFERED="1",
    )
    return env


def install_commands(
    plan: Plan, uv: str, slug: Path, requirements: Path, own_cache: bool = False
) -> list[tuple[str, ...]]:
    """The uv commands that make the slug's ``.venv`` (unless restored) and install into it.
    ``requirements``: where a Poetry or Pipenv lock's pins are written for ``uv pip sync``.
    ``own_cache``: uv's cache is the build's own, in the ``.venv`` that does not exist yet."""
    commands: list[tuple[str, ...]] = []
    venv = slug / ".venv"
    if not plan.restore:
        python = plan.interpreter.path
        # No pip in it (as in uv's own environments): seeding it costs a first build about
        # half a second and a hook can use uv's environment as it is.
        make = (uv, "venv", "--quiet", "--relocatable", *(("--no-cache",) if own_cache else ()))
        commands.append((*make, "-p", python, str(venv)))
    if plan.manager == PIP:
        commands.append((uv, "pip", "install", "--python", str(venv), "-r", PIP.file))
    elif plan.manager == UV:
        # The project itself (when it is a package) installed as a copy of this slug's code,
        # anew each build: an editable one would point at the slug it was first built in.
        sync: tuple[str, ...] = (uv, "sync", "--locked", "--no-default-groups", "--no-editable")
        if plan.project is not None:
            sync += ("--reinstall-package", plan.project)
        commands.append(sync)
    else:
        commands.append((uv, "pip", "sync", "--python", str(venv), str(requirements)))
    return commands


def locked_requirements(plan: Plan, slug: Path) -> list[str] | None:
    """A Poetry or Pipenv lock file's pins, one requirement a line; None for the others."""
    if plan.manager == POETRY:
        return poetry_lock_requirements(read_app_file(slug / POETRY.file))
    if plan.manager == PIPENV:
        return pipfile_lock_requirements(read_app_file(slug / PIPENV.file))
    return None


def step_environment(
    base: Mapping[str, str],
    config: Mapping[str, str],
    slug: Path,
    plan: Plan,
    uv_cache: Path,
    *,
    own_cache: bool,
) -> dict[str, str]:
    """The environment of the app's build steps: its config vars (as on Heroku, where a
    build sees them), under the build's own settings. ``own_cache``: ``uv_cache`` is the
    build's own, in the new ``.venv`` (:mod:`dynos.platform.build_cache`)."""
    env = {k: v for k, v in config.items() if k not in NOT_FROM_CONFIG and not k.startswith("LD_")}
    env.update(base)
    venv = slug / ".venv"
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env["PATH"]])
    env.update(
        VIRTUAL_ENV=str(venv),
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_CACHE_DIR=str(uv_cache),
        UV_PYTHON=plan.interpreter.path,
        UV_PYTHON_DOWNLOADS="never",
        # The app's cache is root's between builds and handed to its user for the next one:
        # never share its inodes with a slug. A first build's own is copied before it is
        # the app's (BuildCache.keep_downloads): uv links each file from it instead.
        UV_LINK_MODE="hardlink" if own_cache else "copy",
        UV_COMPILE_BYTECODE="1",  # as pip does on Heroku: dynos start without compiling
        UV_NO_PROGRESS="1",
    )
    return env


def django_app(slug: Path) -> bool:
    """manage.py at the top and Django installed in the slug's environment."""
    if not (slug / "manage.py").is_file():
        return False
    site = slug / ".venv" / "lib"
    return any(site.glob("python3.*/site-packages/django/__init__.py"))


def collectstatic_disabled(config: Mapping[str, str]) -> bool:
    return config.get("DISABLE_COLLECTSTATIC", "0") not in ("", "0")


COLLECTSTATIC_FAILED = (
    "Error while running '$ python manage.py collectstatic --noinput': see the traceback "
    "above. Fix the app's code, or disable collectstatic for this app with 'dynos "
    "config:set DISABLE_COLLECTSTATIC=1' (https://devcenter.heroku.com/articles/django-assets)."
)


def hook(slug: Path, name: str) -> tuple[str, ...] | None:
    """``bin/<name>`` to run, when the app has it; a script without a ``#!`` line runs with
    sh, as a shell would."""
    path = slug / "bin" / name
    if not path.is_file() or path.is_symlink():
        return None
    path.chmod(path.stat().st_mode | 0o100)
    return ("/bin/sh", "-c", f'exec "./bin/{name}"')


Runner = Callable[..., AsyncIterator[str]]


async def keep_downloads(cache: BuildCache) -> None:
    """Keep what a build downloaded into its own uv cache (BuildCache.take_in) as the app's."""
    try:
        await asyncio.to_thread(cache.keep_downloads)
    except OSError as exc:
        log.warning("could not keep a build's downloads in %s: %s", cache.root, exc)


async def save_cache(cache: BuildCache, slug: Path, plan: Plan, sealed: bool) -> None:
    """Keep the build's downloads (if its uv cache was its own), then a copy of the slug's
    environment for the app's next build. ``sealed``: the build sealed it right after uv's
    install."""
    await keep_downloads(cache)
    try:
        await asyncio.to_thread(cache.save, slug / ".venv", plan.key, sealed=sealed)
    except OSError as exc:
        log.warning("could not save the build cache in %s: %s", cache.root, exc)
        await asyncio.to_thread(cache.discard)


def remove_uploaded_venv(slug: Path) -> bool:
    """An upload's own ``.venv`` (built elsewhere, for another machine) goes before the build
    makes the slug's."""
    venv = slug / ".venv"
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
        return True
    if venv.is_dir():
        shutil.rmtree(venv)
        return True
    return False
