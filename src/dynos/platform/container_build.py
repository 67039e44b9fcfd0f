"""Builds for the docker backend: in a container of the stack image, so that the slug's
virtualenv is made by (and for) the interpreter that will run it in its dynos.

The same build as the local backend's (platform/build.py), with the same rules and output:
the package manager detected in Heroku's order (requirements.txt, uv.lock, poetry.lock,
Pipfile.lock), the Python version from ``.python-version``, ``runtime.txt`` or a Pipfile.lock
(``core.python_build``), chosen among the stack image's own interpreters and the server's
(``container_pythons``: a server's is mounted read-only and copied into the slug; none is
downloaded: a version neither has fails the build in one line), and the same uv commands
(``python_build.install_commands``) run by ``core.containers.build_script`` with the hooks and
collectstatic. uv is the server's own binary, mounted read-only (the stack image needs no
rebuild, and builds use the uv version the local backend's do).

The slug is bind-mounted at /app, where its release image has it too (a virtualenv records
its absolute path). The container has the limits of the app's largest dyno size, no
capabilities, the dynos' network (the internet, no other container), uv's cache of the app
mounted from ``<home>/build-cache/<app id>/uv``, and the deadline of ``--build-timeout``,
after which it is killed. Unlike the local build no environment is restored from a cache:
uv's download cache makes a rebuild's install quick. A failed build's slug is removed by the
caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import docker.errors
from docker import DockerClient
from docker.models.containers import Container

from dynos.backends.engine import dyno_network
from dynos.core.containers import (
    APP_DIR,
    BUILD_INPUT,
    COLLECTSTATIC_STATUS,
    HOST_PYTHON,
    LABEL,
    NETWORK,
    STACK_UV,
    build_script,
    size_limits,
)
from dynos.core.python_build import (
    UV,
    detect_package_manager,
    format_version,
    requested_python,
)
from dynos.core.sizes import DynoSize
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.build import BUILD_TIMEOUT, Slug, describe_timeout
from dynos.platform.container_pythons import ContainerPythons
from dynos.platform.python_build import (
    COLLECTSTATIC_FAILED,
    VERSION_FILES,
    Plan,
    collectstatic_disabled,
    find_uv,
    install_commands,
    locked_requirements,
    project_name,
    read_app_file,
    remove_uploaded_venv,
    step_environment,
)
from dynos.platform.pythons import HostPythons
from dynos.platform.step_output import LINE_LIMIT

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's CAs, which uv trusts
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
STACK_PATH = "/usr/local/bin:/usr/bin:/bin"
UV_CACHE = "/tmp/.cache/uv"  # where the app's uv cache is mounted in the build


class ContainerBuilder:
    """The docker backend's builder: the same face as :class:`~dynos.platform.build.Builder`."""

    def __init__(
        self,
        client: DockerClient,
        stack_image: str,
        cache_dir: Path,
        pythons: HostPythons,
        *,
        server: str,
        timeout: float = BUILD_TIMEOUT,
        network: str = NETWORK,
    ) -> None:
        self._client = client
        self._network = network  # the bridge a build joins (a swarm server's: its own)
        self._stack_image = stack_image
        self.pythons = ContainerPythons(client, stack_image, pythons, server=server)
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._cli = shutil.which("docker") or "docker"
        self._locks: dict[str, asyncio.Lock] = {}

    async def forget(self, app_id: str) -> None:
        """The app was destroyed: its uv cache goes."""
        await asyncio.to_thread(shutil.rmtree, self.cache_dir / app_id, True)
        self._locks.pop(app_id, None)

    def venv_bytes(self, slug_id: str) -> dict[str, int]:
        return {}  # measured by walking the slug, as for any upload

    async def build(
        self, app_id: str, slug: Slug, size: DynoSize, config: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        lock = self._locks.setdefault(app_id, asyncio.Lock())
        if lock.locked():
            yield "-----> Waiting for the app's other build to finish"
        async with lock:
            async for line in self._build(app_id, slug, size, dict(config or {})):
                yield line

    async def _build(
        self, app_id: str, slug: Slug, size: DynoSize, config: dict[str, str]
    ) -> AsyncIterator[str]:
        yield "-----> Python app detected"
        yield (
            f"-----> Building in {self._stack_image} with the limits of a {size.name} dyno, "
            f"for up to {describe_timeout(self.timeout)}"
        )
        uv = find_uv()
        if uv is None:
            raise BuildFailed(
                "uv is not installed on the server, and builds install with it: install "
                "dynos with its dependencies (pip install uv)."
            )
        if remove_uploaded_venv(slug.path):
            yield "-----> Removed the upload's .venv: the build makes the slug's own"
        plan, tree = await self._plan(slug.path)
        for line in plan.lines:
            yield line
        pins = await asyncio.to_thread(locked_requirements, plan, slug.path)
        requirements = Path(BUILD_INPUT) / "requirements.txt"
        install = install_commands(plan, STACK_UV, Path(APP_DIR), requirements)
        disabled = collectstatic_disabled(config)
        manager = f"{plan.manager.file} ({plan.manager.name})"
        script = build_script(
            install, manager, None if disabled else True, host_python=tree is not None
        )
        uv_cache = self.cache_dir / app_id / "uv"
        uv_cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix="dynos-build-") as work:
            if pins is not None:
                Path(work, "requirements.txt").write_text("\n".join(pins) + "\n")
            Path(work).chmod(0o755)
            mounts = {
                str(uv_cache): {"bind": UV_CACHE, "mode": "rw"},
                uv: {"bind": STACK_UV, "mode": "ro"},
                work: {"bind": BUILD_INPUT, "mode": "ro"},
            }
            if tree is not None:  # the server's interpreter: read-only, copied into the slug
                mounts[str(tree)] = {"bind": HOST_PYTHON, "mode": "ro"}
            env = self._environment(config, plan)
            container = await asyncio.to_thread(
                self._create, app_id, slug, size, env, script, mounts
            )
            try:
                async for line in self._run(str(container.id)):
                    yield line
            finally:
                with contextlib.suppress(docker.errors.DockerException):
                    await asyncio.to_thread(container.remove, force=True)

    async def _plan(self, slug: Path) -> tuple[Plan, Path | None]:
        """What the app asks for (its files, read as root on the host) and the interpreter
        that serves it (``container_pythons``), with the host's install tree to mount when
        it is the server's; BuildFailed saying what to change otherwise."""
        names = {entry.name for entry in os.scandir(slug) if entry.is_file(follow_symlinks=False)}
        manager = detect_package_manager(names)
        files = {name: read_app_file(slug / name) for name in VERSION_FILES if name in names}
        request = requested_python(files, manager)
        chosen = await self.pythons.choose(request)
        version = format_version(chosen.interpreter.version)
        if request.version is None:
            first = (
                "-----> No Python version was specified. Using the newest Python on this "
                f"server: {version}"
            )
        else:
            first = f"-----> Using Python {request.describe()} specified in {request.origin}"
        project = project_name(slug) if manager == UV else None
        plan = Plan(manager, request, chosen.interpreter, {}, False, False, project)
        plan.lines += [first, chosen.line]
        return plan, chosen.tree

    def _environment(self, config: Mapping[str, str], plan: Plan) -> dict[str, str]:
        """The build steps' environment, as the local build's (``step_environment``), with
        the container's paths; the server's uv and pip settings and proxies passed on."""
        base = {
            k: v for k, v in os.environ.items() if k.startswith(("PIP_", "UV_")) or k in PROXIES
        }
        base.update(PATH=STACK_PATH, HOME="/tmp", LANG="C.UTF-8", PYTHONUNBUFFERED="1")
        env = step_environment(base, config, Path(APP_DIR), plan, Path(UV_CACHE), own_cache=False)
        if CA_BUNDLE.is_file():  # the host's CAs: a proxy's own CA among them, where one is
            env.update(SSL_CERT_FILE="/etc/dynos/ca.crt", PIP_CERT="/etc/dynos/ca.crt")
        return env

    def _create(
        self,
        app_id: str,
        slug: Slug,
        size: DynoSize,
        env: dict[str, str],
        script: str,
        mounts: dict[str, dict[str, str]],
    ) -> Container:
        env.update(SOURCE_VERSION=slug.id)
        volumes = {str(slug.path): {"bind": APP_DIR, "mode": "rw"}}
        volumes.update(mounts)
        if CA_BUNDLE.is_file():
            volumes[str(CA_BUNDLE)] = {"bind": "/etc/dynos/ca.crt", "mode": "ro"}
        limits = size_limits(size)
        try:
            return self._client.containers.create(
                self._stack_image,
                command=["/bin/bash", "-c", script],
                working_dir=APP_DIR,
                environment=env,
                volumes=volumes,
                labels={f"{LABEL}.build": app_id},
                network=dyno_network(self._client, self._network),
                init=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit=limits.mem_limit,
                memswap_limit=limits.memswap_limit,
                cpu_shares=limits.cpu_shares,
                cpu_period=limits.cpu_period,
                cpu_quota=limits.cpu_quota,
                pids_limit=limits.pids_limit,
            )
        except docker.errors.DockerException as exc:
            raise PlatformError(f"Could not start the build's container: {exc}") from None

    async def _run(self, container_id: str) -> AsyncIterator[str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *(self._cli, "start", "--attach", container_id),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            raise PlatformError(f"Could not start the build: {exc}") from None
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            while True:
                remaining = deadline - loop.time()
                raw = await asyncio.wait_for(process.stdout.readline(), max(0.0, remaining))
                if not raw:
                    break
                yield raw.decode("utf-8", "replace").rstrip()
            status = await asyncio.wait_for(process.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise BuildFailed(
                f"Build timed out after {describe_timeout(self.timeout)} (the server's "
                "--build-timeout): its container was killed. Make the build faster and "
                "deploy again; the previous release keeps running."
            ) from None
        finally:
            if process.returncode is None:  # the deadline, or the client went away
                with contextlib.suppress(docker.errors.DockerException):
                    await asyncio.to_thread(self._client.api.kill, container_id)
                await process.wait()
        if status == COLLECTSTATIC_STATUS:
            raise BuildFailed(COLLECTSTATIC_FAILED)
        if status != 0:
            raise BuildFailed(
                f"Build failed: a step exited with status {status}. Fix the error above and "
                "deploy again; the previous release keeps running."
            )
