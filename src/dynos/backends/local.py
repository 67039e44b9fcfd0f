"""The local backend: each dyno is a process group on this machine.

A dyno runs ``/bin/sh -c <command>`` in a new session (so its process group is the dyno: a
stop signals every process it started), with its release directory as cwd and only the
environment the manager built. Output is read line by line and handed to the events sink.
A web dyno is up once a TCP connect to its PORT succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, field

from dynos.backends.base import DynoEvents, DynoSpec
from dynos.errors import PlatformError

PROBE_INTERVAL = 0.02  # seconds between connect attempts while a web dyno boots
LINE_LIMIT = 1 << 20  # a longer output line is cut in pieces rather than lost
DRAIN_TIMEOUT = 1.0  # seconds to read what an exited dyno left in its pipes


@dataclass
class _Dyno:
    spec: DynoSpec
    process: asyncio.subprocess.Process
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class LocalBackend:
    def __init__(self, events: DynoEvents, *, boot_timeout: float = 60.0) -> None:
        self._events = events
        self._boot_timeout = boot_timeout
        self._dynos: dict[str, _Dyno] = {}

    def allocate_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port

    async def start(self, spec: DynoSpec) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                spec.command,
                cwd=spec.cwd,
                env=spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            raise PlatformError(f"Could not start {spec.name}: {exc}") from exc
        dyno = _Dyno(spec, process)
        self._dynos[spec.key] = dyno
        assert process.stdout is not None and process.stderr is not None
        dyno.tasks = [
            asyncio.create_task(self._pump(spec.key, process.stdout)),
            asyncio.create_task(self._pump(spec.key, process.stderr)),
            asyncio.create_task(self._watch(dyno)),
        ]
        if spec.port is None:
            self._events.dyno_up(spec.key)
        else:
            dyno.tasks.append(asyncio.create_task(self._probe(dyno, spec.port)))

    async def stop(self, key: str, grace: float) -> bool:
        dyno = self._dynos.get(key)
        if dyno is None:
            return False
        _signal_group(dyno.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(dyno.exited.wait(), grace)
        except TimeoutError:
            _signal_group(dyno.process.pid, signal.SIGKILL)
            await dyno.exited.wait()
            return True
        return False

    async def _pump(self, key: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than LINE_LIMIT: take what is buffered
                raw = await stream.read(LINE_LIMIT)
            if not raw:
                return
            self._events.dyno_output(key, raw.decode("utf-8", "replace").rstrip("\r\n"))

    async def _watch(self, dyno: _Dyno) -> None:
        returncode = await dyno.process.wait()
        # The dyno is its whole process group: what its main process left behind goes too.
        _signal_group(dyno.process.pid, signal.SIGKILL)
        # Let the output readers drain what the process wrote before it exited; a process that
        # left the group (setsid) may hold the pipes open, so the wait is bounded.
        readers = dyno.tasks[:2]
        await asyncio.wait(readers, timeout=DRAIN_TIMEOUT)
        for task in (*readers, *dyno.tasks[3:]):
            task.cancel()
        self._dynos.pop(dyno.spec.key, None)
        dyno.exited.set()
        status = 128 - returncode if returncode < 0 else returncode
        self._events.dyno_exited(dyno.spec.key, status)

    async def _probe(self, dyno: _Dyno, port: int) -> None:
        deadline = asyncio.get_running_loop().time() + self._boot_timeout
        while dyno.process.returncode is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    self._events.dyno_boot_timeout(dyno.spec.key)
                    return
                await asyncio.sleep(PROBE_INTERVAL)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if dyno.process.returncode is None:
                self._events.dyno_up(dyno.spec.key)
            return

    async def close(self, grace: float) -> None:
        """Stop every dyno still running (used at server shutdown)."""
        await asyncio.gather(*(self.stop(key, grace) for key in list(self._dynos)))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
