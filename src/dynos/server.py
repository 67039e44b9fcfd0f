"""`dynos server`: wiring only. Build the components, run them in one TaskGroup, stop in order.

Shutdown order (SIGTERM or SIGINT): stop accepting API, router and rendezvous connections,
let in-flight requests finish briefly, then stop every dyno (SIGTERM to each of its processes,
SIGKILL after the grace period; an attached one's client is then told its exit status), then
the add-ons' services (which dynos may use until they stop), then exit 0. No dyno or add-on
process outlives the server. Add-ons start before the first dyno does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass

from dynos import server_log
from dynos.api.git_http import REQUEST_TIMEOUT, GitHttp
from dynos.api.rendezvous import RendezvousListener, certificate_hosts, rendezvous_context
from dynos.api.routes import Api
from dynos.backends.base import Backend, DynoEvents
from dynos.backends.firewall import guard_ports
from dynos.backends.isolation import AppUsers, close_home, isolation_available, runtime_python
from dynos.backends.local import LocalBackend
from dynos.backends.sandbox import Sandboxes
from dynos.config import HomePaths, ServerConfig
from dynos.core.acm import renewal_policy
from dynos.core.certificates import ServedCertificate
from dynos.core.drain_queue import DeliveryRules
from dynos.core.restart_policy import RestartPolicy
from dynos.errors import DatabaseDamaged
from dynos.home_lock import hold_home
from dynos.logs.hub import LogHub
from dynos.manager.manager import DynoManager, ManagerSettings
from dynos.platform.acm import Acm
from dynos.platform.acme_client import AcmeClient
from dynos.platform.addons import Addons
from dynos.platform.build import Builder
from dynos.platform.builders import SlugBuilder
from dynos.platform.certificates import Certificates
from dynos.platform.git_push import GitPushes
from dynos.platform.git_repos import GitRepos
from dynos.platform.metrics import Metrics
from dynos.platform.platform import Platform, local_account
from dynos.platform.postgres_server import reclaim_cluster
from dynos.platform.slug_archive import MB, UnpackLimits
from dynos.priority import raise_platform_priority
from dynos.router import compiled as router_compiled
from dynos.router.challenges import ChallengeBoard
from dynos.router.limits import ConnectionLimits, chosen_limits
from dynos.router.processes import RouterProcesses
from dynos.router.proxy import Router
from dynos.router.route import DynoEndpoint
from dynos.router.routing_table import RoutingTable
from dynos.server_backend import CONTAINER_NOTES, confine_containers, docker_wiring, swarm_wiring
from dynos.server_files import ensure_token, raise_fd_limit, retire_server_json, write_server_json
from dynos.server_listen import bind, router_sockets, url_host, uvicorn_server
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

    backend_factory: Callable[[DynoEvents], Backend] = local_backend
    builder: SlugBuilder = Builder(
        python, paths.builds, sandboxes=sandboxes, users=users, timeout=config.build_timeout
    )
    reach = None  # where container dynos reach add-on servers
    if config.backend in ("docker", "swarm"):  # the engine, stack image (swarm, registry)
        wiring = (docker_wiring if config.backend == "docker" else swarm_wiring)(config, paths)
        backend_factory, builder, reach = wiring.backend, wiring.builder, wiring.addons
        network = confine_containers(ports, wiring) or network
    metrics = Metrics(store, logs)
    settings = ManagerSettings(
        slugs_dir=paths.slugs,
        stop_grace=config.stop_grace,
        restart_policy=RestartPolicy(config.crash_backoff, config.crash_backoff_max),
        idle_after=config.idle_after,
        cycle_after=config.cycle_after,
        boot_timeout=config.boot_timeout,
        python=python,
        runtime_metrics_every=config.runtime_metrics_every,
        on_usage=metrics.usage,
    )
    manager = DynoManager(store, backend_factory, logs, routes, settings)
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
        domain=config.domain,
        metrics=metrics,
    )
    # Before any dyno starts: a release command cut off with a server that died failed.
    for release in await platform.release_phases.recover():
        log.info(
            "release %s of app %s failed: the server stopped during its release command",
            release.version,
            release.app_id,
        )
    certificates = platform.certificates = Certificates(paths.tls, config.domain, store)
    addons = platform.addons = Addons(
        platform,
        paths.addons,
        users=users,
        sandboxes=sandboxes,
        postgres_dir=paths.postgres,
        storage_cap_mb=config.pg_storage_cap_mb or None,
        gateway=(reach.address, reach.network) if reach else None,
        ports=reach.ports if reach else None,
    )
    # Automatic certificates; the directory is asked nothing before an app turns ACM on.
    board = ChallengeBoard(routes, router_processes if config.router_processes > 1 else None)
    acme = AcmeClient(
        *(config.acme_directory, paths.acme, board),
        ca_bundle=config.acme_ca_bundle,
        email=config.acme_email,
    )
    policy = renewal_policy(config.acme_renew_before)
    acm = platform.acm = Acm(
        *(store, logs, acme, certificates, config.domain, policy),
        custom_domains=platform.domains.custom_hostnames,
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
    if config.backend in CONTAINER_NOTES:
        log.info("isolation: %s", CONTAINER_NOTES[config.backend][0])
        log.info("network: %s", CONTAINER_NOTES[config.backend][1])
    elif isolate:
        log.info("isolation: each app's dynos run as the app's own unprivileged user")
    else:
        log.info("isolation: off (not running as root): dynos run as %s", local_account().email)
    log.info("network: %s", network)  # the firewall's part (swarm: the manager's fence)

    api_sock = bind(config.api_host, config.api_port, "--api-port")
    api_port = api_sock.getsockname()[1]
    router = Router(routes, logs, limits=boot.connections.share(config.router_processes))
    # Once a second: the router's cumulative figures, summed over its processes.
    metrics.attach_router(lambda: {a: m.to_json() for a, m in router.metrics.total().items()})

    def certificates_changed(served: list[ServedCertificate]) -> None:
        router.tls.update(served)
        router_processes.certificates_changed(served)

    certificates.on_change = certificates_changed
    await certificates.start()  # the CA on first start; a certificate per app host
    drains = platform.drains  # they trust the platform CA too (an app can be a drain)
    drains.allow_loopback, drains.ca_file = config.drains_allow_loopback, certificates.ca_path
    drains.rules = DeliveryRules(capacity=config.drain_buffer)
    await drains.sync()
    # Custom domains get the CA's certificates and must be covered by an app's own and ACM's.
    await platform.domains.watch(certificates.set_custom_domains)
    await platform.domains.watch(lambda _app, _hosts: acm.hosts_changed())
    try:
        sockets = router_sockets(config.router_host, config.router_port, config, "--router-port")
        tls_sockets = router_sockets(config.router_host, config.https_port, config, "--https-port")
        router_port = await router.start(sock=sockets[0])
        https_port = await router.start_https(sock=tls_sockets[0])
    except BaseException:
        api_sock.close()
        raise
    await router_processes.start(router, list(zip(sockets[1:], tls_sockets[1:], strict=True)))
    rendezvous = RendezvousListener(
        platform, rendezvous_context(paths.tls, certificate_hosts(config.api_host, config.domain))
    )
    rendezvous_sock = bind(config.api_host, config.rendezvous_port, "--rendezvous-port")
    rendezvous_port = await rendezvous.start(rendezvous_sock)
    api_url = f"http://{url_host(config.api_host)}:{api_port}"
    router_url = f"https://{{app}}.{config.domain}:{https_port}/"
    git_url = f"https://git.{config.domain}:{https_port}/{{app}}.git"
    # The git service: on loopback, reached through the router as the host git.<domain>.
    pushes = GitPushes(platform.releases, router_url, paths.git / "tmp")
    platform.git = GitRepos.prepared(paths.git, pushes)
    git_sock = bind("127.0.0.1", 0, "--router-port")
    git_port = git_sock.getsockname()[1]
    routes.set_platform_route("git", DynoEndpoint("git", "127.0.0.1", git_port), REQUEST_TIMEOUT)
    api = Api(
        platform,
        token,
        router_url=router_url,
        api_url=api_url,
        git_url=git_url,
        metrics=router.metrics_registry,
        rendezvous_port=rendezvous_port,
    )
    api_server = uvicorn_server(api.app)
    git_server = uvicorn_server(GitHttp(platform, token, git_url))
    write_server_json(paths, api_url, config.domain, router_port, https_port, rendezvous_port)
    log.info(
        "API on %s (the dashboard at %s/), router on ports %d and %d (apps at "
        "https://<app>.%s:%d/, trusting the CA %s), heroku run attaching on port %d, home %s",
        api_url,
        api_url,
        router_port,
        https_port,
        config.domain,
        https_port,
        certificates.ca_path,
        rendezvous_port,
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
                group.create_task(certificates.keep_fresh()),
                group.create_task(platform.autoscaling.run()),
                group.create_task(metrics.run()),
            ]
            if config.backup_every > 0:
                every, keep = config.backup_every, config.backup_keep
                background.append(
                    group.create_task(backups.keep_backups(store, paths.backups, every, keep))
                )
            background.append(group.create_task(acm.run()))
            group.create_task(api_server.serve(sockets=[api_sock]))
            group.create_task(git_server.serve(sockets=[git_sock]))
            await stop.wait()
            log.info("stopping: closing the API and the router, then stopping every dyno")
            api_server.should_exit = True
            git_server.should_exit = True
            rendezvous.stop_accepting()
            await asyncio.gather(router.close(), router_processes.close())
            await metrics.close()  # the open minute, with the last requests' figures
            await platform.release_phases.close()  # their releases fail, the dynos then stop
            await manager.close()
            await manager.backend.close(config.stop_grace)  # what the backend holds (swarm)
            await rendezvous.close(grace=2)  # each client is told its dyno's exit status
            for task in background:
                task.cancel()
    finally:
        # Whatever ended the TaskGroup (a failing component included), no dyno outlives the
        # server: close() is a no-op for dynos already stopped above.
        await router_processes.close()
        await platform.release_phases.close()
        await manager.close()
        await rendezvous.close()
        await addons.close()
        await platform.drains.close()
        with contextlib.suppress(OSError):  # kept: the CLI names its URL when none runs
            retire_server_json(paths)
        sandboxes.close()
        if ports is not None:  # every dyno is gone: no port is left to guard
            ports.close()
        if users is not None:
            users.remove_all()
    log.info("stopped")


__all__ = ["serve"]
