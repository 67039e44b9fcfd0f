"""Running release phases (the rules are core/release_phase.py's).

A pending release's release command runs as the one-off dyno ``release.NNNN`` (the manager
starts it: manager/one_off.py), on a deadline (``--release-timeout``, an hour as on Heroku).
Its output goes, a line at a time, to the app's log (``app[release.NNNN]``) and to the
release's output file ``<home>/release-output/<release id>.log``, which ``releases:output``
and the deploy that made the release read, live while the command runs and whole afterwards.
When it ends, one store transaction moves the release to ``succeeded`` and fits the formation
to its process types (the manager then restarts the dynos on it), or to ``failed``, which
changes nothing else: the live release keeps serving.

Consistency across a server's end: a server that stops while a release command runs marks
its release ``failed`` as it stops; one that dies leaves it ``pending``, and the next server
marks every pending release ``failed`` before it starts any dyno (:meth:`recover`). Either
way the output file's last line says so, and the release before keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from dynos.backends.attach import STDERR, Terminal
from dynos.core.release_phase import (
    MAX_OUTPUT,
    RELEASE_TIMEOUT,
    LineSplitter,
    PhaseEnd,
    PhaseOutcome,
    ReleaseStatus,
    formation_types,
)
from dynos.core.sizes import DEFAULT_SIZE, DynoSize
from dynos.errors import DynosError
from dynos.logs.logline import APP
from dynos.manager.records import DynoRecord
from dynos.platform.context import Services, api_log
from dynos.store.database import Database
from dynos.store.models import App, Release
from dynos.store.store import Store

log = logging.getLogger(__name__)

HEARTBEAT = 20.0  # seconds of silence after which a follower is told the command still runs


class Heartbeat:
    """No output for HEARTBEAT seconds: the command still runs. A deploy's stream sends a
    blank line for it, so that no client or proxy gives up on a long, quiet migration."""


STILL_RUNNING = Heartbeat()


def new_output_key() -> str:
    """The secret of a release's output_stream_url (the heroku CLI fetches it without a token)."""
    return secrets.token_urlsafe(32)


@dataclass
class _Run:
    """One release command being run: its output file, and a wake-up for its followers."""

    path: Path
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    written: int = 0  # bytes in the output file
    truncated: bool = False
    outcome: PhaseOutcome | None = None  # set when it has ended
    done: bool = False
    discarded: bool = False  # its app was destroyed: nothing more is written

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class ReleasePhases:
    def __init__(
        self, services: Services, output_dir: Path, timeout: float = RELEASE_TIMEOUT
    ) -> None:
        self._services = services
        self._store = services.store
        self.output_dir = output_dir
        self.timeout = timeout
        self._runs: dict[str, _Run] = {}  # by release id, while its command runs
        self._tasks: set[asyncio.Task[None]] = set()

    def output_path(self, release_id: str) -> Path:
        return self.output_dir / f"{release_id}.log"

    # -- running ----------------------------------------------------------------------------

    def start(self, app: App, release: Release) -> None:
        """Run pending ``release``'s release command in the background: the request that
        made the release may go away, the phase goes on."""
        if release.id in self._runs or release.status is not ReleaseStatus.PENDING:
            return
        run = _Run(self.output_path(release.id))
        self._runs[release.id] = run
        task = asyncio.create_task(self._run(app, release, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, app: App, release: Release, run: _Run) -> None:
        outcome = PhaseOutcome(PhaseEnd.INTERRUPTED)
        record: DynoRecord | None = None
        try:
            self._create_output(run)
            size = await dyno_size(self._store, app)
            manager = self._services.manager
            record, terminal = await manager.run_release_command(app.id, release, size)
            outcome = await self._watch(app, record, terminal, run)
        except asyncio.CancelledError:  # the server is stopping: the release fails
            if record is not None and not record.stopping:
                self._services.manager.stop(record)
        except Exception:  # whatever went wrong, the release must not stay pending
            log.exception("release phase of %s v%d", app.name, release.version)
            outcome = PhaseOutcome(PhaseEnd.ERROR)
        try:
            await self._finish(app, release, run, outcome)
        finally:
            run.done = True
            run.notify()
            self._runs.pop(release.id, None)

    async def _watch(
        self, app: App, record: DynoRecord, terminal: Terminal, run: _Run
    ) -> PhaseOutcome:
        reader = asyncio.create_task(self._copy_output(app, record.name, terminal, run))
        exited = asyncio.ensure_future(terminal.exit_status())
        try:
            await asyncio.wait({exited}, timeout=self.timeout)
            end = PhaseEnd.EXITED
            if not exited.done():  # past the deadline: stopped (SIGTERM, then SIGKILL)
                end = PhaseEnd.TIMED_OUT
                if not record.stopping:
                    self._services.manager.stop(record)
                await exited
            await reader  # what it wrote before it exited
            return PhaseOutcome(end, exited.result())
        finally:
            reader.cancel()

    async def _copy_output(self, app: App, dyno: str, terminal: Terminal, run: _Run) -> None:
        splitters = {channel: LineSplitter() for channel in (1, STDERR)}
        async for channel, data in terminal.output():
            self._lines(app, dyno, run, splitters[channel].feed(data))
        for splitter in splitters.values():
            self._lines(app, dyno, run, splitter.flush())

    def _lines(self, app: App, dyno: str, run: _Run, lines: list[str]) -> None:
        for line in lines:
            self._services.logs.emit(app.name, APP, dyno, line)
        if lines:
            self._append(run, "".join(f"{line}\n" for line in lines))

    async def _finish(self, app: App, release: Release, run: _Run, outcome: PhaseOutcome) -> None:
        """Record the outcome: the release goes live, or fails and the one before serves."""
        run.outcome = outcome
        status = outcome.status
        if status is ReleaseStatus.FAILED:
            self._append(run, outcome.reason(self.timeout) + "\n", always=True)

        def decide(db: Database) -> None:
            db.set_release_status(release.id, status)
            if status is ReleaseStatus.SUCCEEDED:
                sync_formation(db, app, release.processes)

        try:
            await self._store.transaction(decide)
        except DynosError as exc:  # its app destroyed meanwhile, or the store out of reach
            log.warning("release phase of %s v%d: %s", app.name, release.version, exc.message)
            return
        if status is ReleaseStatus.FAILED:
            api_log(self._services, app, f"Release v{release.version} command failed")
        self._services.manager.wake()

    # -- the output file ------------------------------------------------------------------------

    def _create_output(self, run: _Run) -> None:
        self.output_dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(run.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.close(fd)

    def _append(self, run: _Run, text: str, *, always: bool = False) -> None:
        """Add ``text`` to the output file (small appends to a local file, on the loop), up
        to MAX_OUTPUT; past it, one line says the rest is only in the app's log."""
        if run.discarded:
            return
        data = text.encode()
        if run.written + len(data) > MAX_OUTPUT and not always:
            if run.truncated:
                return
            run.truncated = True
            data = b"(the release command's further output is not kept here: see 'logs')\n"
        try:
            with open(run.path, "ab") as file:
                file.write(data)
        except OSError as exc:
            log.warning("release output %s: %s", run.path, exc)
            return
        run.written += len(data)
        run.notify()

    async def follow(self, release: Release) -> AsyncIterator[str | Heartbeat | PhaseOutcome]:
        """The release command's output lines, from the first, live while it runs (with a
        :data:`STILL_RUNNING` after each HEARTBEAT of silence); then, when this server ran it
        to its end, how it ended (for the deploy that waits)."""
        run = self._runs.get(release.id)
        offset = 0
        pending = b""
        while True:
            changed = run.changed if run is not None else None
            finished = run is None or run.done
            chunk = await asyncio.to_thread(_read_from, self.output_path(release.id), offset)
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
            if finished:
                break
            assert changed is not None
            try:
                await asyncio.wait_for(changed.wait(), HEARTBEAT)
            except TimeoutError:
                yield STILL_RUNNING
        if pending:
            yield pending.decode("utf-8", "replace")
        if run is not None and run.outcome is not None:
            yield run.outcome

    # -- the server's start and end ------------------------------------------------------------

    async def recover(self) -> list[Release]:
        """At start, before any dyno: a pending release was cut off with the server that ran
        its command; it fails, and the release before it keeps serving."""
        pending = await self._store.pending_releases()
        outcome = PhaseOutcome(PhaseEnd.INTERRUPTED)
        for release in pending:
            await self._store.call(Database.set_release_status, release.id, ReleaseStatus.FAILED)
            with contextlib.suppress(OSError), open(self.output_path(release.id), "a") as file:
                file.write(outcome.reason(self.timeout) + "\n")
        return pending

    async def close(self) -> None:
        """The server stops: every release command running is stopped and its release
        fails (before the manager stops the dynos)."""
        for task in list(self._tasks):
            task.cancel()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def remove_output(self, release_ids: list[str]) -> None:
        """An app was destroyed: its releases' output goes with it."""
        for release_id in release_ids:
            run = self._runs.get(release_id)
            if run is not None:  # its command may still be writing its last lines
                run.discarded = True
            self.output_path(release_id).unlink(missing_ok=True)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read()
    except FileNotFoundError:
        return b""


async def dyno_size(store: Store, app: App) -> DynoSize:
    """The largest size in the app's formation (whatever its quantity: a type scaled to 0
    still runs at its size when scaled up), the default size when it has none yet: what a
    build and a release command run with."""
    sizes = [entry.size for entry in await store.formation(app.id)]
    return max(sizes, key=lambda size: size.memory_mb, default=DEFAULT_SIZE)


def sync_formation(db: Database, app: App, processes: dict[str, str]) -> None:
    """Fit the formation to a live release's process types (inside the caller's transaction).

    Types the release lacks are dropped, new ones start at 0 dynos (``web`` at 1 on the
    first deploy); the others keep their quantity and size. ``release`` is never one.
    """
    types = formation_types(processes)
    existing = {f.type: f for f in db.formation(app.id)}
    for type_ in existing.keys() - set(types):
        db.delete_formation(app.id, type_)
    first_deploy = not existing
    for type_ in set(types) - existing.keys():
        quantity = 1 if first_deploy and type_ == "web" else 0
        db.set_formation(app.id, type_, quantity, DEFAULT_SIZE)
