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
import logging
import os
import shutil
import signal
import socket
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn

from dynos import server_log
from dynos.api.routes import Api
from dynos.backends.base import DynoEvents
from dynos.backends.firewall import guard_ports
from dynos.backends.isolation import AppUsers, close_home, isolation_available, runtime_python
from dynos.backends.local import LocalBackend
from dynos.backends.sandbox import Sandboxes
from dynos.config import HomePaths, ServerConfig
from dynos.core.restart_policy import RestartPolicy
from dynos.errors import DatabaseDamaged, PlatformError, UserError
from dynos.home_lock import hold_home
from dynos.logs.hub import LogHub
from dynos.manager.manager import DynoManager, ManagerSettings
from dynos.platform.addons import Addons
from dynos.platform.build import Builder
from dynos.platform.platform import Platform, local_account
from dynos.platform.postgres_server import reclaim_cluster
from dynos.platform.slug_archive import MB, UnpackLimits
from dynos.priority import raise_platform_priority
from dynos.router import compiled as router_compiled
from dynos.router.limits import ConnectionLimits, chosen_limits
from dynos.router.processes import RouterProcesses, listening_sockets
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable
from dynos.server_files import ensure_token, raise_fd_limit, retire_server_json, write_server_json
from dynos.store import backups
from dynos.store.store import Store

log = logging.getLogger("dynos")


def serve(config: ServerConfig) -> None:
    """Run the platform until SIGTERM or SIGINT. Raises UserError for a port in use."""
    repeats = server_log.configure()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop does not build everywhere; asyncio's loop still works
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(_serve(config, repeats))
    finally:
        repeats.flush(every=True)


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


class _ApiServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the dynos server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve(config: ServerConfig, repeats: server_log.RepeatFilter) -> None:
    paths = HomePaths(config.home)
    # First, so that every process the server starts leaves this priority knowingly.
    priority = raise_platform_priority(config.router_priority)
    nofile = raise_fd_limit()
    boot = _Boot(
        priority,
        nofile,
        chosen_limits(
            nofile, config.router_max_connections, config.router_max_connections_per_client
        ),
        repeats,
    )
    if isolation_available():
        # Whatever the server writes (database, credentials, uploads) is its own; slugs are
        # opened to their app's group one by one (isolation.open_slug_to).
        os.umask(0o077)
    paths.home.mkdir(parents=True, exist_ok=True)
    with hold_home(paths, "stop that server first, or give this one another --home."):
        store = await _open_store(paths)
        try:
            await _serve_store(config, paths, store, boot)
        finally:
            await store.close()


async def _open_store(paths: HomePaths) -> Store:
    """The store, or DatabaseDamaged saying in one line how to restore the database."""
    try:
        return await Store.open(paths.database)
    except DatabaseDamaged as exc:
        newest = backups.newest(paths.backups)
        if newest is None:
            how = (
                f"there is no backup in {paths.backups}: move the file aside to start with no "
                "apps, or salvage it with sqlite3's .recover"
            )
        else:
            how = (
                f"restore the newest backup with 'dynos server:restore {newest} --home "
                f"{paths.home}' (docs/cli.md), then start the server again"
            )
        raise DatabaseDamaged(
            f"The database {paths.database} is damaged ({exc.reason}), so the server will not "
            f"start on it: {how}.",
            exc.reason,
        ) from None


@dataclass(frozen=True)
class _Boot:
    """What the server settled before opening its home: its CPU priority (as said at start),
    its file descriptor limit, the router's connection caps and the log's repeat counter."""

    priority: str
    nofile: int
    connections: ConnectionLimits
    repeats: server_log.RepeatFilter


async def _serve_store(config: ServerConfig, paths: HomePaths, store: Store, boot: _Boot) -> None:
    paths.slugs.mkdir(exist_ok=True)
    token = ensure_token(paths)
    logs = LogHub()
    # More router processes (started with the router, below) follow the table's every change.
    router_processes = RouterProcesses(logs)
    routes = RoutingTable(
        config.domain,
        # The manager wakes a sleeping app, and it writes this table, so it is made after the
        # table: its name is looked up when the first request for an idle app comes.
        on_wake=lambda app: manager.wake_app(app),
        followers=router_processes if config.router_processes > 1 else None,
    )

    sandboxes = Sandboxes.for_server(paths.home, scratch_mb=config.scratch_mb)
    reaped = sandboxes.reap_leftovers()
    if reaped:
        log.info("killed %d dyno processes left by a server that died", reaped)
    sandboxes.start_watchdog()  # from here, the dynos die with this server, however it ends
    isolate = isolation_available()
    users = AppUsers(paths.home) if isolate else None
    if users is not None:
        close_home(paths.home)
        # A killed server's Postgres data is still its cluster user's, whose files go next.
        reclaim_cluster(paths.postgres)
        removed = users.remove_stale()
        if removed:
            log.info("removed %d app users left by servers that died", removed)
    python = runtime_python(isolate)
    # Before any dyno starts; the table goes with this process, however it ends.
    ports, network = guard_ports(paths.home)
    # Build directories of a server that was killed mid-build: their builds are gone.
    shutil.rmtree(paths.builds, ignore_errors=True)

    def local_backend(events: DynoEvents) -> LocalBackend:
        return LocalBackend(
            events,
            boot_timeout=config.boot_timeout,
            users=users,
            sandboxes=sandboxes,
            ports=ports,
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
    builder = Builder(
        python, paths.builds, sandboxes=sandboxes, users=users, timeout=config.build_timeout
    )
    limits = UnpackLimits(config.max_unpacked_size * MB, config.max_unpacked_files)
    platform = Platform(
        store,
        manager,
        logs,
        paths.slugs,
        local_account(),
        python,
        builder=builder,
        unpack_limits=limits,
        release_timeout=config.release_timeout,
    )
    # Before any dyno starts: a release command cut off with a server that died failed.
    for release in await platform.release_phases.recover():
        log.info(
            "release %s of app %s failed: the server stopped during its release command",
            release.version,
            release.app_id,
        )
    addons = platform.addons = Addons(
        platform,
        paths.addons,
        users=users,
        sandboxes=sandboxes,
        postgres_dir=paths.postgres,
        storage_cap_mb=config.pg_storage_cap_mb or None,
    )
    log.info("dyno sizes enforced with %s", manager.backend.limits)  # type: ignore[attr-defined]
    if router_compiled():
        log.info("router: compiled with mypyc")
    else:
        log.info(
            "router: pure Python, about 60% more CPU per request than compiled (the install "
            "had no C compiler, or DYNOS_PURE_PYTHON was set; see the README)"
        )
    log.info(boot.priority)
    log.info(
        "router: at most %d client connections, %d from one address (file descriptor "
        "limit %d; --router-max-connections, --router-max-connections-per-client)",
        boot.connections.total,
        boot.connections.per_client,
        boot.nofile,
    )
    if isolate:
        log.info("isolation: each app's dynos run as the app's own unprivileged user")
    else:
        log.info("isolation: off (not running as root): dynos run as %s", local_account().email)
    log.info("network: %s", network)

    api_sock = _bind(config.api_host, config.api_port, "--api-port")
    api_port = api_sock.getsockname()[1]
    router = Router(routes, logs, limits=boot.connections.share(config.router_processes))
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
    await router_processes.start(router, sockets[1:])
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
    write_server_json(paths, api_url, config.domain, router_port)
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
            background = [
                group.create_task(manager.run()),
                group.create_task(server_log.flush_now_and_then(boot.repeats)),
            ]
            if config.backup_every > 0:
                every, keep = config.backup_every, config.backup_keep
                background.append(
                    group.create_task(backups.keep_backups(store, paths.backups, every, keep))
                )
            group.create_task(api_server.serve(sockets=[api_sock]))
            await stop.wait()
            log.info("stopping: closing the API and the router, then stopping every dyno")
            api_server.should_exit = True
            await asyncio.gather(router.close(), router_processes.close())
            await platform.release_phases.close()  # their releases fail, the dynos then stop
            await manager.close()
            for task in background:
                task.cancel()
    finally:
        # Whatever ended the TaskGroup (a failing component included), no dyno outlives the
        # server: close() is a no-op for dynos already stopped above.
        await router_processes.close()
        await platform.release_phases.close()
        await manager.close()
        await addons.close()
        with contextlib.suppress(OSError):  # kept: the CLI names its URL when none runs
            retire_server_json(paths)
        sandboxes.close()
        if ports is not None:  # every dyno is gone: no port is left to guard
            ports.close()
        if users is not None:
            users.remove_all()
    log.info("stopped")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


__all__ = ["serve"]
