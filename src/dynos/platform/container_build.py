"""Builds for the docker backend: in a container of the stack image, so that the slug's
virtualenv is made by (and for) the interpreter that will run it in its dynos.

The slug is bind-mounted at /app, where its release image has it too (a virtualenv records
its absolute path), and ``core.containers.build_script`` runs there: the hooks, pip into
``.venv``, collectstatic. The container has the limits of the app's largest dyno size, no
capabilities, the dynos' network (the internet, no other container), pip's cache of the app
mounted from ``<home>/build-cache/<app id>/pip``, and the deadline of ``--build-timeout``,
after which it is killed. A failed build's slug is removed by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import docker.errors
from docker import DockerClient
from docker.models.containers import Container

from dynos.backends.engine import dyno_network
from dynos.core.containers import (
    APP_DIR,
    BUILD_FILES,
    LABEL,
    build_script,
    size_limits,
)
from dynos.core.sizes import DynoSize
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.build import BUILD_TIMEOUT, Slug, describe_timeout
from dynos.platform.python_build import (
    NOT_FROM_CONFIG,
    collectstatic_disabled,
    remove_uploaded_venv,
)
from dynos.platform.step_output import LINE_LIMIT

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's CAs, which pip trusts
PIP_SETTINGS = ("PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_INDEX_URL")
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class ContainerBuilder:
    """The docker backend's builder: the same face as :class:`~dynos.platform.build.Builder`."""

    def __init__(
        self,
        client: DockerClient,
        stack_image: str,
        cache_dir: Path,
        *,
        timeout: float = BUILD_TIMEOUT,
    ) -> None:
        self._client = client
        self._stack_image = stack_image
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._cli = shutil.which("docker") or "docker"
        self._locks: dict[str, asyncio.Lock] = {}

    async def forget(self, app_id: str) -> None:
        """The app was destroyed: its pip cache goes."""
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
        files = {name for name in BUILD_FILES if (slug.path / name).is_file()}
        try:
            script = build_script(files, collectstatic=not collectstatic_disabled(config))
        except ValueError as exc:
            raise BuildFailed(str(exc)) from None
        yield "-----> Python app detected"
        yield (
            f"-----> Building in {self._stack_image} with the limits of a {size.name} dyno, "
            f"for up to {describe_timeout(self.timeout)}"
        )
        if remove_uploaded_venv(slug.path):
            yield "-----> Removed the upload's .venv: the build makes the slug's own"
        pip_cache = self.cache_dir / app_id / "pip"
        pip_cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        container = await asyncio.to_thread(
            self._create, app_id, slug, size, config, script, pip_cache
        )
        try:
            async for line in self._run(str(container.id)):
                yield line
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.to_thread(container.remove, force=True)

    def _create(
        self,
        app_id: str,
        slug: Slug,
        size: DynoSize,
        config: dict[str, str],
        script: str,
        pip_cache: Path,
    ) -> Container:
        env = {k: v for k, v in config.items() if k not in NOT_FROM_CONFIG}
        env.update({k: os.environ[k] for k in (*PIP_SETTINGS, *PROXIES) if k in os.environ})
        env.update(HOME="/tmp", LANG="C.UTF-8", PYTHONUNBUFFERED="1", SOURCE_VERSION=slug.id)
        volumes = {
            str(slug.path): {"bind": APP_DIR, "mode": "rw"},
            str(pip_cache): {"bind": "/tmp/.cache/pip", "mode": "rw"},
        }
        if CA_BUNDLE.is_file():  # the host's CAs: a proxy's own CA among them, where one is
            volumes[str(CA_BUNDLE)] = {"bind": "/etc/dynos/ca.crt", "mode": "ro"}
            env.update(PIP_CERT="/etc/dynos/ca.crt", SSL_CERT_FILE="/etc/dynos/ca.crt")
        limits = size_limits(size)
        try:
            return self._client.containers.create(
                self._stack_image,
                command=["/bin/bash", "-c", script],
                working_dir=APP_DIR,
                environment=env,
                volumes=volumes,
                labels={f"{LABEL}.build": app_id},
                network=dyno_network(self._client),
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
        if status != 0:
            raise BuildFailed(
                f"Build failed: a step exited with status {status}. Fix the error above and "
                "deploy again; the previous release keeps running."
            )
