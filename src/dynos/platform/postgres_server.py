"""The Postgres cluster of a dynos server: one per home, made on first need, kept in the home.

Layout (``<home>/postgres``, root's, 0711 as root so that the cluster's user may pass through
it to its data but list nothing)::

    admin.json   the port and the superuser's password (0600, the server's alone)
    data/        PGDATA: the cluster's user's while it runs, root's again once it stopped
    backups/     pg:backups, one directory per add-on (0700, the server's alone)

The cluster runs Debian's ``postgres`` in a sandbox (:mod:`dynos.backends.sandbox`) as a
Redis add-on does: as root, as a system user of its own (``for_addon("postgres")``) in a
cgroup of its own with a private scratch; without root, as the server's user under a reaper.
It listens on 127.0.0.1 only, on a port picked free at its creation and kept (it is in every
app's ``DATABASE_URL``), with no unix socket (every client, the server included, comes over
TCP, and a socket under a deep home could exceed the 107 bytes a socket path may have). SSL
is on with a self-signed certificate made here (Heroku's apps connect with
``sslmode=require``), and ``pg_hba.conf``, written at every start, admits only SSL with a
SCRAM password: the superuser to any database, every other role only to the database of its
own name (``sameuser``).

The server talks to it with ``psql`` as the superuser; what it sends is built only from names
and passwords it made itself (:func:`dynos.core.postgres_plans.database_name`, hex), never
from a client's input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dynos.backends.cgroups import Limits
from dynos.backends.isolation import AppUsers, DynoUser
from dynos.backends.sandbox import Sandbox, Sandboxes
from dynos.core.postgres_config import MAX_CONNECTIONS, SUPERUSER, hba, server_options
from dynos.core.sizes import DynoSize
from dynos.errors import PlatformError, PortTaken
from dynos.platform.ownership import hand_over, take_back
from dynos.platform.postgres_tls import make_certificate, write_private

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install -y postgresql"
READY_TIMEOUT = 60.0  # seconds for a start (crash recovery of a killed cluster included)
POLL = 0.05
OUTPUT_TAIL = 8
# The cgroup: a quota of 512 MB (cap 1 GB), enough for shared_buffers and a few hundred
# backends; pids for max_connections plus the background workers.
CLUSTER_SIZE = DynoSize("postgres", (), 512, 1, False, 1, MAX_CONNECTIONS + 64)
BIND_FAILED = "could not create any TCP/IP sockets"  # postgres's words when its port is taken
PROGRAMS = ("postgres", "initdb", "pg_isready", "psql", "pg_dump", "pg_restore")


def find_bindir() -> Path:
    """The directory of Postgres's programs: Debian keeps them in /usr/lib/postgresql/N/bin
    (the newest N), others on PATH. PlatformError with the install command when missing."""
    on_path = shutil.which("postgres")
    candidates = [Path(on_path).parent] if on_path else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in [*candidates, *versions]:
        if all((bindir / program).is_file() for program in PROGRAMS):
            return bindir
    raise PlatformError(
        "PostgreSQL is not installed on the dynos server's machine: install it "
        f"({INSTALL_HINT} on Debian/Ubuntu) and try again."
    )


@dataclass(frozen=True)
class Admin:
    """How the server reaches its cluster."""

    port: int
    password: str


class Cluster:
    """The server's Postgres cluster under ``root``; started on first need."""

    def __init__(
        self,
        root: Path,
        sandboxes: Sandboxes,
        users: AppUsers | None,
        allocate_port: Callable[[], int],
        gateway: tuple[str, str] | None = None,
        ports: range | None = None,
    ) -> None:
        """``users``: where the cluster's own user comes from (None: it runs as the server's
        user, without root); ``allocate_port``: a free port, once; ``gateway``: an address
        also listened on and a network let in (``hba``): the docker bridge's, or a swarm's
        router address and any; ``ports``: where its port must be (a swarm's add-on range):
        one recorded elsewhere (the home ran another backend before) is moved."""
        self._ports = ports
        self._listen = gateway[0] if gateway else None
        self._subnet = gateway[1] if gateway else None
        self.root = root
        self.data = root / "data"
        self.backups = root / "backups"
        self._sandboxes = sandboxes
        self._users = users
        self._allocate_port = allocate_port
        self._bindir: Path | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._sandbox: Sandbox | None = None
        self._output: asyncio.Task[None] | None = None
        self._tail: list[str] = []

    def program(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = find_bindir()
        return str(self._bindir / name)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def move_port(self) -> Admin:
        """Another process took the cluster's port while it was down: pick a free one."""
        return self._record(Admin(self._allocate_port(), self.admin().password))

    def _record(self, admin: Admin) -> Admin:
        recorded = {"port": admin.port, "password": admin.password}
        write_private(self.root / "admin.json", json.dumps(recorded).encode(), 0o600)
        return admin

    def admin(self) -> Admin:
        """The port and superuser password, made (and kept) the first time."""
        path = self.root / "admin.json"
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            recorded = json.loads(path.read_text())
            admin = Admin(int(recorded["port"]), str(recorded["password"]))
            if self._ports is None or admin.port in self._ports:
                return admin
            log.warning("moving the Postgres cluster into ports %s", self._ports)
            return self._record(Admin(self._allocate_port(), admin.password))
        admin = Admin(self._allocate_port(), secrets.token_hex(32))
        self._layout()
        write_private(
            path, json.dumps({"port": admin.port, "password": admin.password}).encode(), 0o600
        )
        return admin

    # -- start and stop -------------------------------------------------------------------------

    async def start(self) -> None:
        """initdb the first time, then start ``postgres`` and return once it accepts the
        superuser. PlatformError (quoting its last lines) when it does not."""
        admin = self.admin()
        user = self._users.for_addon("postgres") if self._users is not None else None
        self._layout()
        if not (self.data / "PG_VERSION").exists():
            await self._initdb(admin, user)
            fresh = True
        else:
            fresh = False
        if not (self.data / "server.key").exists():
            make_certificate(self.data)
        write_private(self.data / "pg_hba.conf", hba(self._subnet).encode(), 0o600)
        options = server_options(admin.port, self._listen)
        if user is not None:
            take_back(self.data)  # from the last run's user, whose uid may be another's now
            hand_over(self.data, user)
        sandbox = self._prepare("addon-postgres", user)
        self._tail = []
        try:
            process = await sandbox.spawn(
                [self.program("postgres"), "-D", str(self.data), *options],
                workdir=self.data,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except (OSError, ValueError) as exc:
            raise PlatformError(f"Could not run postgres: {exc}.") from exc
        self.process, self._sandbox = process, sandbox
        assert process.stdout is not None
        self._output = asyncio.create_task(_pump(process.stdout, self._remember))
        try:
            await self._wait_ready(admin)
            if fresh:  # nobody but the superuser may connect to the cluster's own databases
                await self.sql(
                    "REVOKE ALL ON DATABASE postgres FROM PUBLIC",
                    "REVOKE ALL ON DATABASE template1 FROM PUBLIC",
                )
        except BaseException:
            await self.stop(grace=0)
            raise

    async def stop(self, grace: float = 10.0) -> bool:
        """A fast shutdown (SIGINT: clients are disconnected, data is flushed), SIGKILL to all
        after ``grace``; then the data is root's again. Returns whether its memory cap killed a
        process of it."""
        process, sandbox = self.process, self._sandbox
        if process is None or sandbox is None:
            return False
        if process.returncode is None:
            pid = _postmaster_pid(self.data)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), grace)
            if process.returncode is None:
                await sandbox.stop(min(grace, 2.0))
        await process.wait()
        return await self.finished()

    async def finished(self) -> bool:
        """Once its process exited: release its sandbox, take its data back."""
        sandbox, output = self._sandbox, self._output
        self.process = self._sandbox = self._output = None
        if sandbox is None:
            return False
        oom_killed = await sandbox.finish()
        if sandbox.user is not None:
            await asyncio.to_thread(take_back, self.data)
        if output is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(output, 1.0)
        return oom_killed

    # -- talking to it -----------------------------------------------------------------------

    def dsn(self, database: str, user: str, port: int) -> str:
        return f"host=127.0.0.1 port={port} dbname={database} user={user} sslmode=require"

    async def sql(self, *statements: str, database: str = "postgres") -> list[list[str]]:
        """Run ``statements`` as the superuser, each in its own transaction (CREATE DATABASE
        may not run in one); the rows of the last, as text. PlatformError when one fails."""
        admin = self.admin()
        argv = [self.program("psql"), "-X", "-q", "-A", "-t", "-F", "\t"]
        argv += ["-v", "ON_ERROR_STOP=1", "-d", self.dsn(database, SUPERUSER, admin.port)]
        for statement in statements:
            argv += ["-c", statement]
        code, out, err = await run(argv, {"PGPASSWORD": admin.password})
        if code != 0:
            raise PlatformError(f"Postgres refused the platform's request: {err.strip()}")
        return [line.split("\t") for line in out.splitlines() if line]

    # -- helpers -------------------------------------------------------------------------------

    def _layout(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711 if os.geteuid() == 0 else 0o700)
        self.data.mkdir(exist_ok=True)
        self.data.chmod(0o700)
        self.backups.mkdir(exist_ok=True)
        self.backups.chmod(0o700)

    def _prepare(self, name: str, user: DynoUser | None) -> Sandbox:
        try:
            return self._sandboxes.prepare(
                name,
                limits=Limits.of(CLUSTER_SIZE),
                user=user,
                scratch_bytes=self._sandboxes.scratch_for(CLUSTER_SIZE),
                visible=(self.root,),
            )
        except OSError as exc:
            raise PlatformError(f"Could not set up limits for Postgres: {exc}") from exc

    async def _initdb(self, admin: Admin, user: DynoUser | None) -> None:
        """A new cluster in the empty data directory. Its superuser's password is in a file
        only the cluster's user may read, for as long as initdb runs (initdb cannot read it
        from a socket, which is what asyncio gives a child as its stdin)."""
        password_file = self.root / "initdb-password"
        write_private(password_file, admin.password.encode() + b"\n", 0o600)
        if user is not None:
            hand_over(self.data, user)
            os.chown(password_file, user.uid, user.gid)
        sandbox = self._prepare("addon-postgres-initdb", user)
        argv = [self.program("initdb"), "-D", str(self.data), "-U", SUPERUSER]
        argv += [f"--pwfile={password_file}", "--auth=scram-sha-256"]
        argv += ["-E", "UTF8", "--locale=C.UTF-8"]
        try:
            process = await sandbox.spawn(
                argv,
                workdir=self.data,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except (OSError, ValueError) as exc:
            password_file.unlink(missing_ok=True)
            raise PlatformError(f"Could not run initdb: {exc}.") from exc
        try:
            out, _ = await asyncio.wait_for(process.communicate(), READY_TIMEOUT)
        except TimeoutError:
            await sandbox.stop(0)
            out = b"timed out"
        finally:
            password_file.unlink(missing_ok=True)
            await sandbox.finish()
            if user is not None:
                await asyncio.to_thread(take_back, self.data)
        if process.returncode != 0:
            for entry in list(self.data.iterdir()):  # a half-made cluster is started over
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            said = " / ".join(out.decode(errors="replace").strip().splitlines()[-OUTPUT_TAIL:])
            raise PlatformError(f"initdb failed (exit status {process.returncode}): {said}")

    async def _wait_ready(self, admin: Admin) -> None:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        isready = [self.program("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(admin.port)]
        while loop.time() < deadline and self.process.returncode is None:
            code, _, _ = await run([*isready, "-t", "1"], {})
            if code == 0:
                return
            await asyncio.sleep(POLL)
        said = " / ".join(self._tail) or "no output"
        if any(BIND_FAILED in line for line in self._tail):
            raise PortTaken(f"postgres could not listen on port {admin.port}: {said}")
        raise PlatformError(f"postgres did not start: {said}")

    def _remember(self, line: str) -> None:
        self._tail[:] = [*self._tail[-(OUTPUT_TAIL - 1) :], line]
        log.info("postgres: %s", line)  # the server's log: it tells of every app's queries


def reclaim_cluster(root: Path) -> None:
    """As root, at start, before the users of a server that was killed are removed with every
    file they own: take its cluster's data back from the cluster's user (its processes were
    killed with the rest of that server's). ``<home>/postgres`` must be passable for the
    cluster, so that removal would reach the data, where it cannot reach ``<home>/addons``."""
    data = root / "data"
    if data.is_dir() and not data.is_symlink():
        take_back(data)  # all of it: a kill halfway through a hand-over leaves a mix


async def run(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run a Postgres client program; its exit status, stdout and stderr."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGCONNECT_TIMEOUT": "10"}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**environment, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise PlatformError(f"Could not run {argv[0]}: {exc}.") from exc
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _pump(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    while line := await stream.readline():
        on_line(line.decode("utf-8", "replace").rstrip())


def _postmaster_pid(data: Path) -> int | None:
    """The postmaster's pid from its pid file (its first line)."""
    try:
        fd = os.open(data / "postmaster.pid", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as file:
            return int(file.readline().strip())
    except (OSError, ValueError):
        return None
