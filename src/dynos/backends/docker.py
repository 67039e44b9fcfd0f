"""The docker backend: each dyno is a container on the local Docker engine.

Behind the same seam as the local backend (base.py). A dyno's container runs its release's
image (images.py: the image of its slug, the stack image with the slug at /app, labelled with
the release) as the unprivileged dyno user, with
no capabilities and no new privileges, on the ``dynos`` bridge network (no traffic between
containers), with docker's init as PID 1 (tini: signals reach the app, zombies are reaped).
Its size becomes the engine's limits (``core.containers.size_limits``); the kernel's kill at
the memory limit is reported as R15 (the engine's ``OOMKilled``), and the manager's memory
watch reads the container's cgroup for R14.

A web dyno's ``PORT`` is the host port the manager allocated (ports.py): it binds that port
in its container, published on 127.0.0.1 at the same number, where the router sends its
requests. The boot probe connects to the container's own address instead, since the engine's
proxy accepts on the published port before the app listens.

Output: ``docker start --attach`` relays the container's stdout and stderr (or an attached
one-off's terminal, with ``--interactive``) and exits with its status, so dyno lines reach
the log hub as the local backend's do. Containers are labelled with the server's id and
removed when they exit; a server that starts removes whatever its predecessor left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import docker.errors
import requests
from docker import DockerClient
from docker.models.containers import Container

from dynos.backends.base import HERE, DynoEvents, DynoSpec, DynoUsage, Placement
from dynos.backends.container_cgroups import cgroup_cpu_seconds, cgroup_memory, memory_file
from dynos.backends.engine import dyno_network, remove_network
from dynos.backends.images import ReleaseImages
from dynos.backends.local import LINE_LIMIT, PROBE_INTERVAL, answers, pump_lines, start_command
from dynos.backends.ports import DynoPorts
from dynos.core.containers import (
    APP_DIR,
    DYNO_UID,
    LABEL,
    NETWORK,
    container_environment,
    container_name,
    dyno_labels,
    server_id,
    size_limits,
)
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
# What an engine call may raise: the SDK's errors, and its HTTP client's (a timeout).
ENGINE_ERRORS = (docker.errors.DockerException, requests.RequestException)
DRAIN_TIMEOUT = 1.0  # seconds to read what an exited container's relay left in its pipes
SIGKILLED = 137  # an exit status of 128 + 9: the engine had to kill the container at stop


@dataclass
class _Dyno:
    spec: DynoSpec
    container: Container
    process: asyncio.subprocess.Process  # the `docker start --attach` relaying its output
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    running: asyncio.Event = field(default_factory=asyncio.Event)  # the engine says so
    status: int | None = None
    memory_file: Path | None = None
    ip: str | None = None  # on the dynos network, once it runs


class DockerBackend:
    def __init__(
        self,
        events: DynoEvents,
        client: DockerClient,
        *,
        stack_image: str,
        home: Path,
        boot_timeout: float = 60.0,
        addon_host: str | None = None,
        network: str = NETWORK,
    ) -> None:
        """``addon_host``: where the containers reach the add-on servers (the dynos bridge's
        gateway): their URLs in a dyno's environment name it instead of 127.0.0.1.
        ``network``: the bridge its containers join (a swarm server's one-offs: its own)."""
        self._events = events
        self._addon_host = addon_host
        self._client = client
        self._boot_timeout = boot_timeout
        self._server = server_id(str(home))
        self._boot = secrets.token_hex(4)
        self.images = ReleaseImages(client, stack_image)
        self._network = dyno_network(client, network)
        self._dynos: dict[str, _Dyno] = {}
        self._starting: dict[str, asyncio.Event] = {}
        self._ports = DynoPorts()
        # Engine calls block (a stop for its whole grace period): a pool of their own, so
        # that they never wait behind the loop's default executor's other work.
        self._pool = ThreadPoolExecutor(32, thread_name_prefix="docker")
        self._cli = shutil.which("docker") or "docker"
        removed = self._remove_leftovers()
        if removed:
            log.info("removed %d dyno containers left by a server that died", removed)

    @property
    def limits(self) -> str:
        version = self._client.version().get("Version", "?")
        return f"Docker {version} container limits (memory, CPU shares and quota, pids)"

    def _remove_leftovers(self) -> int:
        """Remove the containers a previous server on this home left (it died, or was killed):
        their dynos are not this server's, and their ports are free again."""
        # sparse: a full list inspects each one, and one removed meanwhile raises NotFound
        leftovers = self._client.containers.list(
            all=True, sparse=True, filters={"label": f"{LABEL}.server={self._server}"}
        )
        for container in leftovers:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        return len(leftovers)

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    def allocate_port(self) -> int:
        return self._ports.allocate()

    def address(self, key: str) -> str | None:
        """The container's own address: the router connects there directly, past the
        engine's userland proxy that the published port goes through (a copy of every byte
        in one more process: 28% of the throughput, docs/performance.md)."""
        dyno = self._dynos.get(key)
        return None if dyno is None else dyno.ip

    def placement(self, key: str) -> Placement:
        return HERE  # the port it was given, on this machine's engine

    async def start(self, spec: DynoSpec) -> None:
        # A start takes seconds (the release image, the container): a stop meanwhile waits
        # for it, then stops what it started.
        started = self._starting[spec.key] = asyncio.Event()
        try:
            await self._start(spec)
        except PlatformError:
            self._ports.release(spec.port)
            raise
        finally:
            del self._starting[spec.key]
            started.set()

    async def _start(self, spec: DynoSpec) -> None:
        try:
            image = await self._call(
                self.images.ensure, spec.app_id, spec.app_name, spec.cwd, spec.release
            )
        except ENGINE_ERRORS as exc:
            raise PlatformError(f"Could not make the image of {spec.name}: {exc}") from None
        terminal = spec.terminal
        limits = size_limits(spec.size)
        # Its network, made again if an operator pruned it while no container used it (the
        # server made it at its start only: one-offs failed "not found" until a build).
        network = await self._call(dyno_network, self._client, self._network)
        try:
            container: Container = await self._call(
                self._client.containers.create,
                image,
                command=start_command(spec.command, spec.cwd),
                name=container_name(self._server, self._boot, spec.key),
                environment=container_environment(spec.env, str(spec.cwd), self._addon_host),
                user=f"{DYNO_UID}:{DYNO_UID}",
                working_dir=APP_DIR,
                labels=dyno_labels(self._server, spec.app_id, spec.app_name, spec.name, spec.key),
                network=network,
                ports={f"{spec.port}/tcp": ("127.0.0.1", spec.port)} if spec.port else {},
                init=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                tty=bool(terminal and terminal.tty),
                stdin_open=terminal is not None,
                mem_limit=limits.mem_limit,
                memswap_limit=limits.memswap_limit,
                cpu_shares=limits.cpu_shares,
                cpu_period=limits.cpu_period,
                cpu_quota=limits.cpu_quota,
                pids_limit=limits.pids_limit,
            )
        except ENGINE_ERRORS as exc:
            raise PlatformError(f"Could not create the container of {spec.name}: {exc}") from None
        argv = [self._cli, "start", "--attach", *(["--interactive"] if terminal else [])]
        pipes = (asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE, asyncio.subprocess.PIPE)
        stdin, stdout, stderr = terminal.child_stdio() if terminal else pipes
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                str(container.id),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                limit=LINE_LIMIT,
                start_new_session=True,
                preexec_fn=terminal.child_setup(lambda: None) if terminal else None,
            )
        except OSError as exc:
            await self._call(container.remove, force=True)
            raise PlatformError(f"Could not start {spec.name}: {exc}") from None
        dyno = _Dyno(spec, container, process)
        self._dynos[spec.key] = dyno
        if terminal is not None:
            dyno.readers = terminal.connect(process.pid)
        else:
            assert process.stdout is not None and process.stderr is not None
            emit = partial(self._events.dyno_output, spec.key)
            dyno.readers = [
                asyncio.create_task(pump_lines(process.stdout, emit)),
                asyncio.create_task(pump_lines(process.stderr, emit)),
            ]
        dyno.tasks = [
            *dyno.readers,
            asyncio.create_task(self._watch(dyno)),
            asyncio.create_task(self._probe(dyno, spec.port)),
        ]

    async def _watch(self, dyno: _Dyno) -> None:
        relay_status = await dyno.process.wait()
        await asyncio.wait(dyno.readers, timeout=DRAIN_TIMEOUT)
        for task in dyno.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        status, oom_killed = relay_status, False
        try:
            # The relay can end before the container (killed): wait for the container.
            result = await self._call(dyno.container.wait)
            status = int(result.get("StatusCode", relay_status))
            await self._call(dyno.container.reload)
            oom_killed = bool(dyno.container.attrs["State"].get("OOMKilled"))
            await self._call(dyno.container.remove, force=True)
        except ENGINE_ERRORS:
            pass  # gone already (removed by hand): its status is the relay's
        self._dynos.pop(dyno.spec.key, None)
        self._ports.release(dyno.spec.port)
        dyno.status = status
        dyno.exited.set()
        if oom_killed:
            self._events.dyno_oom_killed(dyno.spec.key)
        self._events.dyno_exited(dyno.spec.key, status)

    async def _probe(self, dyno: _Dyno, port: int | None) -> None:
        """Up once the container runs and, for a web dyno, answers on its port."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._boot_timeout
        address = await self._address(dyno, deadline)
        if address is None or dyno.exited.is_set():
            if port is not None and not dyno.exited.is_set():
                self._events.dyno_boot_timeout(dyno.spec.key)  # not even running by then
            return
        if port is None:
            self._events.dyno_up(dyno.spec.key)
            return
        while not dyno.exited.is_set():
            if await answers(address, port, dyno.spec.health_path):
                if not dyno.exited.is_set():
                    self._events.dyno_up(dyno.spec.key)
                return
            if loop.time() > deadline:
                self._events.dyno_boot_timeout(dyno.spec.key)
                return
            await asyncio.sleep(PROBE_INTERVAL)

    async def _address(self, dyno: _Dyno, deadline: float) -> str | None:
        """The container's address on the dynos network, once it is running; None if it
        ended first, or the deadline passed."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            with contextlib.suppress(*ENGINE_ERRORS):
                await self._call(dyno.container.reload)
                networks = dyno.container.attrs["NetworkSettings"]["Networks"]
                address = networks.get(self._network, {}).get("IPAddress")
                if address and dyno.container.attrs["State"].get("Running"):
                    dyno.ip = str(address)
                    dyno.running.set()
                    return str(address)
            if dyno.exited.is_set():
                return None
            await asyncio.sleep(0.05)
        return None

    async def stop(self, key: str, grace: float, *, replaced: bool = False) -> bool:
        starting = self._starting.get(key)
        if starting is not None:
            await starting.wait()
        dyno = self._dynos.get(key)
        if dyno is None:
            return False
        # The relay starts the container: a stop before then would find nothing to signal.
        running = asyncio.ensure_future(dyno.running.wait())
        ended = asyncio.ensure_future(dyno.exited.wait())
        await asyncio.wait({running, ended}, return_when=asyncio.FIRST_COMPLETED)
        running.cancel()
        ended.cancel()
        started = time.monotonic()
        with contextlib.suppress(*ENGINE_ERRORS):
            # SIGTERM to the init, which passes it on; SIGKILL after the whole grace period.
            await self._call(dyno.container.stop, timeout=math.ceil(grace))
        await dyno.exited.wait()
        return dyno.status == SIGKILLED and time.monotonic() - started >= grace

    def memory_used(self, key: str) -> int | None:
        """The container's memory from its cgroup (what the kernel's limit counts, less the
        page cache it can drop), as ``docker stats`` shows it; a file read, no engine call."""
        dyno = self._dynos.get(key)
        if dyno is None:
            return None
        if dyno.memory_file is None:
            dyno.memory_file = memory_file(str(dyno.container.id))
            if dyno.memory_file is None:
                return None
        return cgroup_memory(dyno.memory_file)

    def usage(self, key: str) -> DynoUsage | None:
        """Memory and CPU seconds from the container's cgroups (files, no engine call)."""
        used = self.memory_used(key)
        dyno = self._dynos.get(key)
        if used is None or dyno is None:
            return None
        return DynoUsage(used, cpu_seconds=cgroup_cpu_seconds(str(dyno.container.id)) or 0.0)

    def scratch_usage(self, key: str) -> tuple[int, int] | None:
        return None  # a container's writes go to its own layer, gone with it

    def kill(self, key: str) -> None:
        dyno = self._dynos.get(key)
        if dyno is not None:
            dyno.tasks.append(asyncio.create_task(self._kill(dyno)))

    async def _kill(self, dyno: _Dyno) -> None:
        with contextlib.suppress(*ENGINE_ERRORS):
            await self._call(dyno.container.kill)

    async def release_app(self, app_id: str) -> None:
        await self._call(self.images.remove_app, app_id)

    async def close(self, grace: float) -> None:
        await asyncio.gather(*(self.stop(key, grace) for key in list(self._dynos)))
        if self._network != NETWORK:  # a server's own bridge (swarm): not left to pile up
            await asyncio.to_thread(remove_network, self._client, self._network)
        self._pool.shutdown(wait=False)
