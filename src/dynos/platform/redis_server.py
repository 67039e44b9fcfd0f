"""redis-server as the process of a managed Redis add-on: its config, its start, its check.

The Debian/Ubuntu package's ``redis-server`` runs on 127.0.0.1 with a password, in the
foreground, its log on stdout, and its data in the add-on's own directory: an append-only
file (fsynced every second) plus snapshots, so that data outlives restarts of the server and of
the machine. A start counts only once the server answers ``AUTH`` and ``PING``.

Its plan sets ``maxmemory`` (with Heroku's ``noeviction`` policy: a write past it is refused
with Redis's OOM error) and ``maxclients``. The app's password may run every command but those
that would undo that or reach past its data: CONFIG, ACL, MODULE, DEBUG, SHUTDOWN and
replication. It runs in a sandbox (:mod:`dynos.backends.sandbox`), as a dyno does: as root, as
a user of its own, in a cgroup capped at its plan's memory cap, with a private scratch over
/tmp, /dev/shm and the other directories open to all users; without root, under a reaper that
keeps whatever it starts; either way with every signal at its default. It starts in its data
directory, entered as root, so that the directories above it (``<home>/addons``) stay closed
to every other user, including that user's uid once it is given to someone else; its config,
password included, comes on its stdin and is never written to a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from dynos.backends.sandbox import Sandbox
from dynos.core.redis_plans import EVICTION_POLICY, RedisPlan
from dynos.errors import PlatformError, PortTaken
from dynos.platform.ownership import hand_over, take_back

INSTALL_HINT = "apt-get install -y redis-server"
READY_TIMEOUT = 15.0  # seconds for redis-server to answer PING (it may load a large dataset)
POLL = 0.02
OUTPUT_TAIL = 5  # lines of a failed start's output quoted in the error
ADDRESS_IN_USE = "Address already in use"  # strerror(EADDRINUSE), in its "bind:" line
PIDFILE = "redis.pid"
# What the app's password may not do: change the limits or the users, load code, stop the
# server, or make it copy data to or from elsewhere.
DENIED_COMMANDS = (
    *("config", "acl", "module", "debug", "shutdown"),
    *("replicaof", "slaveof", "failover", "sync", "psync"),
)


def find_redis_server() -> str:
    """The redis-server program; PlatformError with the install command when it is missing."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if found is None:
        raise PlatformError(
            "redis-server is not installed on the dynos server's machine: install it "
            f"({INSTALL_HINT} on Debian/Ubuntu) and try again."
        )
    return found


def redis_url(port: int, password: str) -> str:
    """What the app gets in REDIS_URL (redis-py, RQ and most clients read this form)."""
    return f"redis://:{password}@127.0.0.1:{port}"


def redis_config(port: int, password: str, plan: RedisPlan, also_bind: str | None = None) -> str:
    """The config of one add-on's redis-server, which reads it on stdin and keeps its data in
    its working directory. ``password`` must be hex (it is written unquoted). ``also_bind``:
    a second address to listen on, the docker bridge's gateway where container dynos reach
    it (the server's firewall lets only that bridge's traffic in there)."""
    denied = " ".join(f"-{command}" for command in DENIED_COMMANDS)
    return "\n".join(
        [
            " ".join(["bind 127.0.0.1", *([also_bind] if also_bind else [])]),
            "protected-mode yes",
            f"port {port}",
            f"user default on >{password} ~* &* +@all {denied}",
            "daemonize no",
            'logfile ""',
            'dir "."',
            f'pidfile "{PIDFILE}"',
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            f"maxmemory {plan.maxmemory_bytes}",
            f"maxmemory-policy {EVICTION_POLICY}",
            f"maxclients {plan.max_clients}",
            # Keyspace events of list commands: a worker autoscaler learns of a pushed job at
            # once, without polling (platform/autoscaling.py).
            "notify-keyspace-events Kl",
            "",
        ]
    )


@dataclass
class RedisProcess:
    process: asyncio.subprocess.Process
    output: asyncio.Task[None]  # forwards its log lines for as long as it runs
    sandbox: Sandbox
    data_dir: Path


async def start_redis(
    program: str,
    data_dir: Path,
    port: int,
    password: str,
    plan: RedisPlan,
    on_line: Callable[[str], None],
    sandbox: Sandbox,
    also_bind: str | None = None,
) -> RedisProcess:
    """Start redis-server in ``sandbox`` (prepared with ``data_dir`` visible) for the add-on
    whose data lives in ``data_dir``; return once it answers. Its output lines go to
    ``on_line``. With ``sandbox.user`` (root) the data directory is that user's while it
    runs. The sandbox is finished when this raises.

    Raises PlatformError (quoting the end of its output) when it exits or stays silent,
    PortTaken when another process has ``port``.
    """
    user = sandbox.user
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        await asyncio.to_thread(_stop_leftover, data_dir)
        (data_dir / "redis.conf").unlink(missing_ok=True)  # where earlier versions kept it
        if user is not None:
            data_dir.parent.chmod(0o700)  # only root passes through to the data
            take_back(data_dir)  # from its user of the last run, whose uid may be another's now
            hand_over(data_dir, user)
    except BaseException:
        await sandbox.finish()
        raise
    try:
        # In a session of its own: a Ctrl-C at the server's terminal is for the server.
        process = await sandbox.spawn(
            # The config comes on stdin: the password is never written to a file.
            [program, "-"],
            workdir=data_dir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PlatformError(f"Could not run {program}: {exc}.") from exc
    assert process.stdin is not None
    with contextlib.suppress(OSError):  # one that exits at once says why on stdout
        process.stdin.write(redis_config(port, password, plan, also_bind).encode())
        await process.stdin.drain()
    process.stdin.close()
    tail: list[str] = []

    def remember(line: str) -> None:
        tail[:] = [*tail[-(OUTPUT_TAIL - 1) :], line]
        on_line(line)

    assert process.stdout is not None
    pump = asyncio.create_task(_pump(process.stdout, remember))
    redis = RedisProcess(process, pump, sandbox, data_dir)
    process_done = asyncio.ensure_future(process.wait())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    try:
        while not (
            await asyncio.to_thread(_listens, process.pid, port) and await _answers(port, password)
        ):
            if process_done.done() or loop.time() > deadline:
                break
            await asyncio.sleep(POLL)
        else:  # it answered
            return redis
    except BaseException:  # cancelled while starting: nothing of it may stay
        await stop_redis(redis, grace=0)
        raise
    finally:
        process_done.cancel()
    await stop_redis(redis, grace=0)
    said = " / ".join(tail) or "no output"
    if any(ADDRESS_IN_USE in line for line in tail):
        raise PortTaken(f"redis-server could not listen on port {port}: {said}")
    raise PlatformError(f"redis-server did not start (exit status {process.returncode}): {said}")


async def stop_redis(redis: RedisProcess, grace: float = 10.0) -> bool:
    """SIGTERM to every process of it (redis-server saves and exits), SIGKILL to all that are
    left after ``grace`` seconds; then its sandbox is finished and, as root, its data
    directory is root's again. Returns whether the kernel killed a process of it for its
    memory limit."""
    if redis.process.returncode is None:
        await redis.sandbox.stop(grace)
    await redis.process.wait()
    oom_killed = await redis.sandbox.finish()
    if redis.sandbox.user is not None:
        await asyncio.to_thread(take_back, redis.data_dir)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(redis.output, 1.0)
    return oom_killed


async def _pump(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    while line := await stream.readline():
        on_line(line.decode("utf-8", "replace").rstrip())


def _listens(pid: int, port: int) -> bool:
    """Whether the process ``pid``, or a child of it (redis-server under the reaper, without
    root), listens on ``port``: the kernel's word. Until then the port may be another
    process's, which must not be sent the password nor pass for the add-on's server."""
    try:
        spawned = psutil.Process(pid)
        for process in (spawned, *spawned.children()):
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    return True
    except psutil.Error:
        return False
    return False


async def _answers(port: int, password: str) -> bool:
    """Whether redis-server on ``port`` accepts the password and answers PING (not while it
    is still loading its data)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(f"AUTH {password}\r\nPING\r\n".encode())
        await writer.drain()
        auth = await asyncio.wait_for(reader.readline(), 2.0)
        pong = await asyncio.wait_for(reader.readline(), 2.0)
        return auth == b"+OK\r\n" and pong == b"+PONG\r\n"
    except (OSError, TimeoutError, ValueError):  # ValueError: a line past the reader's limit
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _stop_leftover(data_dir: Path) -> None:
    """A redis-server that outlived a killed dynos server still holds this add-on's port and
    data: stop it (SIGTERM makes it save) before starting anew. Its pidfile was written by the
    add-on's user, so the pid counts only for a redis-server running in this very directory."""
    try:
        fd = os.open(data_dir / PIDFILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as file:
            pid = int(file.read(32).strip())
        process = psutil.Process(pid)
        if "redis" not in process.name() or Path(process.cwd()) != data_dir.resolve():
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(5)
    except (OSError, ValueError, psutil.Error):
        return
