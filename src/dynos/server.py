"""`dynos server`: wiring only. Build the components, run them in one TaskGroup, stop in order.

Shutdown order (SIGTERM or SIGINT): stop accepting API and router connections, let in-flight
requests finish briefly, then stop every dyno (SIGTERM to each of its processes, SIGKILL after
the grace period), then the add-ons' services (which dynos may use until they stop), then exit
0. No dyno or add-on process outlives the server. Add-ons start before the first dyno does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
from collections.abc import Generator
from pathlib import Path

import uvicorn

from dynos.api.routes import Api
from dynos.backends.base import DynoEvents
from dynos.backends.isolation import AppUsers, close_home, isolation_available, runtime_python
from dynos.backends.local import LocalBackend
from dynos.backends.sandbox import Sandboxes
from dynos.config import HomePaths, ServerConfig
from dynos.core.restart_policy import RestartPolicy
from dynos.errors import PlatformError, UserError
from dynos.logs.hub import LogHub
from dynos.manager.manager import DynoManager, ManagerSettings
from dynos.platform.addons import Addons
from dynos.platform.platform import Platform, local_account
from dynos.priority import raise_platform_priority
from dynos.router import compiled as router_compiled
from dynos.router.processes import RouterProcesses, listening_sockets
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable
from dynos.store.store import Store

log = logging.getLogger("dynos")


def serve(config: ServerConfig) -> None:
    """Run the platform until SIGTERM or SIGINT. Raises UserError for a port in use."""
    logging.basicConfig(level=logging.INFO, format="dynos server: %(message)s")
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop does not build everywhere; asyncio's loop still works
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(config))


def ensure_token(paths: HomePaths) -> str:
    """The API token, created (mode 0600) on first start."""
    try:
        return paths.credentials.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        token = secrets.token_hex(32)
        fd = os.open(paths.credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
        return token


def _bind(host: str, port: int, flag: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"Port {port} on {host} is already in use: stop what uses it, or pass "
                f"{flag} with another port (0 picks a free one)."
            ) from exc
        raise UserError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _lock_home(paths: HomePaths) -> int:
    """Hold the home for this server's lifetime (the lock goes with the process, kill -9
    included): what a server finds of its home's at start (cgroups, the process registry,
    app users) is then a dead server's, never a running one's. UserError if one runs."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(
            f"Another dynos server is running on {paths.home}: stop it first, or start this "
            "one with another --home."
        ) from None
    return fd


class _ApiServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the dynos server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve(config: ServerConfig) -> None:
    paths = HomePaths(config.home)
    # First, so that every process the server starts leaves this priority knowingly.
    priority = raise_platform_priority(config.router_priority)
    if isolation_available():
        # Whatever the server writes (database, credentials, uploads) is its own; slugs are
        # opened to their app's group one by one (isolation.open_slug_to).
        os.umask(0o077)
    paths.home.mkdir(parents=True, exist_ok=True)
    home_lock = _lock_home(paths)
    paths.slugs.mkdir(exist_ok=True)
    token = ensure_token(paths)
    store = Store(paths.database)
    logs = LogHub()
    routes = RoutingTable(config.domain)

    sandboxes = Sandboxes.for_server(paths.home, scratch_mb=config.scratch_mb)
    reaped = sandboxes.reap_leftovers()
    if reaped:
        log.info("killed %d dyno processes left by a server that died", reaped)
    sandboxes.start_watchdog()  # from here, the dynos die with this server, however it ends
    isolate = isolation_available()
    users = AppUsers(paths.home) if isolate else None
    if users is not None:
        close_home(paths.home)
        removed = users.remove_stale()
        if removed:
            log.info("removed %d app users left by servers that died", removed)
    python = runtime_python(isolate)

    def local_backend(events: DynoEvents) -> LocalBackend:
        return LocalBackend(
            events, boot_timeout=config.boot_timeout, users=users, sandboxes=sandboxes
        )

    settings = ManagerSettings(
        slugs_dir=paths.slugs,
        stop_grace=config.stop_grace,
        restart_policy=RestartPolicy(config.crash_backoff, config.crash_backoff_max),
        idle_after=config.idle_after,
        cycle_after=config.cycle_after,
        boot_timeout=config.boot_timeout,
        python=python,
    )
    manager = DynoManager(store, local_backend, logs, routes, settings)
    platform = Platform(store, manager, logs, paths.slugs, local_account(), python)
    addons = platform.addons = Addons(platform, paths.addons)
    log.info("dyno sizes enforced with %s", manager.backend.limits)  # type: ignore[attr-defined]
    if router_compiled():
        log.info("router: compiled with mypyc")
    else:
        log.info(
            "router: pure Python, about 60% more CPU per request than compiled (the install "
            "had no C compiler, or DYNOS_PURE_PYTHON was set; see the README)"
        )
    log.info(priority)
    if isolate:
        log.info("isolation: each app's dynos run as the app's own unprivileged user")
    else:
        log.info("isolation: off (not running as root): dynos run as %s", local_account().email)

    api_sock = _bind(config.api_host, config.api_port, "--api-port")
    api_port = api_sock.getsockname()[1]
    router = Router(routes, logs)
    try:
        sockets = listening_sockets(config.router_host, config.router_port, config.router_processes)
        router_port = await router.start(sock=sockets[0])
    except OSError as exc:
        api_sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"Port {config.router_port} is already in use: stop what uses it, or pass "
                "--router-port with another port (0 picks a free one)."
            ) from exc
        raise PlatformError(f"Cannot start the router: {exc}") from exc
    router_processes = RouterProcesses(router, logs, sockets[1:])
    await router_processes.start()
    api_url = f"http://{_url_host(config.api_host)}:{api_port}"
    router_url = f"http://{{app}}.{config.domain}:{router_port}/"
    api = Api(
        platform,
        token,
        router_url=router_url,
        api_url=api_url,
        metrics=router.metrics_registry,
    )
    api_server = _ApiServer(
        uvicorn.Config(
            api.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    _write_server_json(paths, api_url, config.domain, router_port)
    log.info(
        "API on %s, router on port %d (apps at http://<app>.%s:%d/), home %s",
        api_url,
        router_port,
        config.domain,
        router_port,
        paths.home,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await addons.start()
    try:
        async with asyncio.TaskGroup() as group:
            manager_task = group.create_task(manager.run())
            group.create_task(api_server.serve(sockets=[api_sock]))
            await stop.wait()
            log.info("stopping: closing the API and the router, then stopping every dyno")
            api_server.should_exit = True
            await asyncio.gather(router.close(), router_processes.close())
            await manager.close()
            manager_task.cancel()
    finally:
        # Whatever ended the TaskGroup (a failing component included), no dyno outlives the
        # server: close() is a no-op for dynos already stopped above.
        await router_processes.close()
        await manager.close()
        await addons.close()
        paths.server_json.unlink(missing_ok=True)
        store.close()
        sandboxes.close()
        if users is not None:
            users.remove_all()
        os.close(home_lock)
    log.info("stopped")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _write_server_json(paths: HomePaths, api_url: str, domain: str, router_port: int) -> None:
    info = {
        "api_url": api_url,
        "router_url": f"http://{domain}:{router_port}",
        "router_port": router_port,
        "domain": domain,
        "pid": os.getpid(),
    }
    tmp = Path(f"{paths.server_json}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(paths.server_json)


__all__ = ["ensure_token", "serve"]
