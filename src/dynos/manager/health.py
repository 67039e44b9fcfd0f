"""Health checks of web dynos, from the release's ``app.json`` (core/healthchecks.py).

Startup (and readiness) checks run once a new web dyno listens on ``$PORT`` (the backend's
``dyno_up``): the dyno stays ``starting``, out of the router, until each check passed; a
check that fails all its attempts ends the dyno (killed, with a log line that says which
check and why), which the restart policy, or a preboot, then deals with. Liveness checks run
while the dyno is up: ``attempts`` failures in a row restart it, with a log line.

Each check is an HTTP/1.0 GET to 127.0.0.1:$PORT with the app's own hostname as ``Host``
(``APP.<domain>``: an app that checks its Host header, as Django's ALLOWED_HOSTS does, accepts
it as it accepts routed requests), on a deadline of the check's ``timeout``. The loops end
by themselves once the dyno's process changed (its backend key is no longer the one they were
started for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from dynos.core.healthchecks import NO_CHECKS, HealthCheck, HealthChecks, parse_app_json
from dynos.core.states import DynoState
from dynos.errors import UserError
from dynos.manager.control import DynoControl
from dynos.manager.records import DynoRecord

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes of an answer kept to look for a check's content
APP_JSON = "app.json"


def read_healthchecks(slug: Path) -> HealthChecks:
    """The checks of the ``app.json`` at the top of a slug (none without one). UserError
    for one that cannot be used: a deploy refuses it (platform/slug_archive.py)."""
    # Never through a link, and never blocking: a build (as the app's user) could have put
    # a FIFO there, whose open and read would stall the manager's loop.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(slug / APP_JSON, flags)
    except FileNotFoundError:
        return NO_CHECKS
    except OSError as exc:
        raise UserError(f"app.json cannot be read ({exc.strerror}): make it a plain file.") from exc
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError("app.json is not a plain file: make it one.")
        return parse_app_json(file.read(1 << 20 | 1))


class SlugChecks:
    """Each slug's health checks, read once (a slug never changes). A slug whose app.json
    cannot be used (one deployed before checks were read) counts as having none."""

    def __init__(self, slugs_dir: Path) -> None:
        self._slugs_dir = slugs_dir
        self._checks: dict[str, HealthChecks] = {}

    def __call__(self, slug_id: str) -> HealthChecks:
        checks = self._checks.get(slug_id)
        if checks is None:
            try:
                checks = read_healthchecks(self._slugs_dir / slug_id)
            except UserError as exc:
                log.warning("slug %s: app.json ignored: %s", slug_id, exc.message)
                checks = NO_CHECKS
            self._checks[slug_id] = checks
        return checks


async def probe(port: int, check: HealthCheck, host: str) -> str | None:
    """One attempt of ``check`` against the dyno on ``port``, asking for ``host``: why it
    failed, or None."""
    try:
        return await asyncio.wait_for(_get(port, check, host), check.timeout)
    except TimeoutError:
        return f"did not answer within {check.timeout:g} s"
    except OSError as exc:
        return f"could not be reached ({exc.strerror or exc})"


async def _get(port: int, check: HealthCheck, host: str) -> str | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {check.path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readline()
        parts = head.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return "answered something other than HTTP"
        body = b""
        if check.content is not None:
            body = await reader.read(MAX_BODY)  # headers and the start of the body
            while len(body) < MAX_BODY and (more := await reader.read(MAX_BODY - len(body))):
                body += more
        return check.verdict(int(parts[1]), body)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class HealthChecker:
    """Runs the checks of the manager's web dynos (one task per dyno at a time)."""

    def __init__(
        self,
        control: DynoControl,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        domain: str,
    ) -> None:
        """``domain``: the platform's, under which each app's hostname is ``APP.<domain>``."""
        self._control = control
        self._spawn = spawn
        self._domain = domain

    def _host(self, record: DynoRecord) -> str:
        return f"{record.app_name}.{self._domain}"

    def startup(self, record: DynoRecord) -> None:
        """``record`` listens on its port: run its gating checks, then make it up."""
        assert record.key is not None
        self._spawn(self._startup(record, record.key))

    async def _startup(self, record: DynoRecord, key: str) -> None:
        assert record.port is not None
        for check in record.checks.gating:
            await asyncio.sleep(check.initial_delay)
            why = None
            for attempt in range(1, int(check.attempts) + 1):
                if record.key != key or record.stopping:
                    return
                why = await probe(record.port, check, self._host(record))
                if why is None:
                    break
                if attempt < check.attempts:
                    await asyncio.sleep(check.wait)
            if record.key != key or record.stopping:
                return
            if why is not None:
                self._control.platform_log(
                    record,
                    f"Error R10 (Boot timeout) -> Web process failed its {check.label}: "
                    f"{why} ({check.attempts:g} attempts)",
                )
                self._control.platform_log(record, "Stopping process with SIGKILL")
                self._control.backend.kill(key)
                return
        if record.state is DynoState.STARTING and not record.stopping:
            self._control.change_state(record, DynoState.UP)
            self.liveness(record)
            self._control.publish_routes()
            self._control.wake()

    def liveness(self, record: DynoRecord) -> None:
        """``record`` is up: keep checking that it is alive, if its app asks for that."""
        if record.key is not None and record.port is not None:
            for check in record.checks.liveness:
                self._spawn(self._liveness(record, record.key, record.port, check))

    async def _liveness(self, record: DynoRecord, key: str, port: int, check: HealthCheck) -> None:
        await asyncio.sleep(check.initial_delay)
        failures = 0
        while record.key == key and not record.stopping:
            why = await probe(port, check, self._host(record))
            if record.key != key or record.stopping:
                return
            failures = 0 if why is None else failures + 1
            if failures >= check.attempts:
                self._control.platform_log(
                    record,
                    f"Liveness check failed: {check.label} {why}, {failures} times in a row: "
                    "restarting the dyno",
                )
                self._control.platform_log(record, "Stopping process with SIGKILL")
                self._control.backend.kill(key)  # its exit is a crash: the policy restarts it
                return
            await asyncio.sleep(check.wait)
