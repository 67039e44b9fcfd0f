"""redis-server as the process of a managed Redis add-on: its config, its start, its check.

The Debian/Ubuntu package's ``redis-server`` runs on 127.0.0.1 with a password, in the
foreground, its log on stdout, and its data in the add-on's own directory: an append-only
file (fsynced every second) plus snapshots, so that data outlives restarts of the server and of
the machine. A start counts only once the server answers ``AUTH`` and ``PING``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from dynos.errors import PlatformError
from dynos.priority import as_workload

INSTALL_HINT = "apt-get install -y redis-server"
READY_TIMEOUT = 15.0  # seconds for redis-server to answer PING (it may load a large dataset)
POLL = 0.02
OUTPUT_TAIL = 5  # lines of a failed start's output quoted in the error


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


def redis_config(data_dir: Path, port: int, password: str) -> str:
    """The redis.conf of one add-on. ``password`` must be hex (it is written unquoted)."""
    return "\n".join(
        [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {port}",
            f"requirepass {password}",
            "daemonize no",
            'logfile ""',
            f'dir "{data_dir}"',
            f'pidfile "{data_dir / "redis.pid"}"',
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            "",
        ]
    )


@dataclass
class RedisProcess:
    process: asyncio.subprocess.Process
    output: asyncio.Task[None]  # forwards its log lines for as long as it runs


async def start_redis(
    program: str, data_dir: Path, port: int, password: str, on_line: Callable[[str], None]
) -> RedisProcess:
    """Start redis-server for the add-on whose data lives in ``data_dir``; return once it
    answers. Its output lines go to ``on_line``.

    Raises PlatformError (quoting the end of its output) when it exits or stays silent.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    await asyncio.to_thread(_stop_leftover, data_dir / "redis.pid")
    config = data_dir / "redis.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the password
    with os.fdopen(fd, "w") as file:
        file.write(redis_config(data_dir, port, password))
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the server's terminal is for the server
            preexec_fn=as_workload,  # an app's add-on, not the platform: no router priority
        )
    except OSError as exc:
        raise PlatformError(f"Could not run {program}: {exc.strerror}.") from exc
    tail: list[str] = []

    def remember(line: str) -> None:
        tail[:] = [*tail[-(OUTPUT_TAIL - 1) :], line]
        on_line(line)

    assert process.stdout is not None
    pump = asyncio.create_task(_pump(process.stdout, remember))
    process_done = asyncio.ensure_future(process.wait())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    try:
        while True:
            if await _answers(port, password):
                return RedisProcess(process, pump)
            if process_done.done() or loop.time() > deadline:
                break
            await asyncio.sleep(POLL)
        if not process_done.done():
            process.kill()
        await process_done
        await asyncio.wait_for(pump, 1.0)
        said = " / ".join(tail) or "no output"
        raise PlatformError(
            f"redis-server did not start (exit status {process.returncode}): {said}"
        )
    finally:
        process_done.cancel()


async def stop_redis(redis: RedisProcess, grace: float = 10.0) -> None:
    """SIGTERM (redis-server saves and exits), SIGKILL after ``grace`` seconds."""
    process = redis.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(redis.output, 1.0)


async def _pump(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    while line := await stream.readline():
        on_line(line.decode("utf-8", "replace").rstrip())


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
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _stop_leftover(pidfile: Path) -> None:
    """A redis-server that outlived a killed dynos server still holds this add-on's port and
    data: stop it (SIGTERM makes it save) before starting anew."""
    try:
        pid = int(pidfile.read_text().strip())
        process = psutil.Process(pid)
        if "redis" not in process.name():
            return
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    except (OSError, ValueError, psutil.Error):
        return
