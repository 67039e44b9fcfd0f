"""One-off dynos (``dynos run``): how they are named, and what an attached one waits for.

A one-off dyno ``run.NNNN`` runs a command from its app's current release and config vars,
outside the formation: the planner leaves it alone (until its app is destroyed), it is never
restarted, and the manager forgets it once its process has exited (Heroku's ``State changed
from up to complete``). A detached one starts at once and its output goes to the app's logs.
An attached one starts only when its client connects to its ``attach_url``, so that none of
its output is lost; if no client comes within :data:`ATTACH_TIMEOUT` it is given up (R13):
the manager wakes at :meth:`OneOffRunner.attach_deadline` for it, so that a client that never
connects (a ``heroku run`` whose TLS handshake failed) holds nothing for long.

A release command (the release phase, platform/release_phase.py) runs the same way as a
one-off ``release.NNNN`` of the pending release it decides on, not of the live one, with
pipes the platform reads in place of a client's terminal.
"""

from __future__ import annotations

import hmac
import logging
import math
import random
from collections.abc import Callable, Collection, Mapping

from dynos.backends.attach import Terminal
from dynos.core.release_phase import RELEASE_TYPE
from dynos.core.sizes import DEFAULT_SIZE, DynoSize, find_size
from dynos.core.states import DynoState
from dynos.errors import Conflict, Unauthorized, UserError
from dynos.manager.control import DynoControl
from dynos.manager.records import Attachment, DynoRecord
from dynos.store.models import Release
from dynos.store.store import Store

# Seconds an attached one-off dyno waits for its client: ample for a client that connects
# right after creating it (the heroku CLI, dynos run), and the dyno is gone well within 30 s.
ATTACH_TIMEOUT = 25.0
RUN_NUMBERS = range(1000, 10000)  # run.NNNN: four random digits, as Heroku's

log = logging.getLogger(__name__)


class OneOffRunner:
    """Runs ``dynos run``: creates the one-off's record, starts it now or when its client
    attaches, and gives up attached ones whose client never came. The manager starts, stops
    and forgets the dyno; a one-off's exit is the manager's backend-event business too."""

    def __init__(self, control: DynoControl, store: Store, clock: Callable[[], float]) -> None:
        self._control = control
        self._store = store
        self._clock = clock

    async def run(
        self,
        app_id: str,
        command: str,
        *,
        size: str | None = None,
        env: dict[str, str] | None = None,
        attach: bool = False,
        tty: bool = True,
    ) -> DynoRecord:
        """Run ``command`` as a one-off dyno ``run.NNNN`` of the app's current release.

        Detached, its process starts now and its output goes to the logs. Attached, it waits
        for a client to :meth:`attach` (a pty when ``tty``, else pipes). ``env`` is added to
        the config vars. Raises UserError when the app has nothing deployed, or for an
        unknown size; nothing is created then.
        """
        app = await self._store.get_app(app_id)
        release = await self._store.current_release(app.id)
        if release is None or release.slug_id is None:
            raise UserError(
                f"{app.name} has no release to run a command in: deploy it first "
                f"(dynos deploy -a {app.name})."
            )
        if not command.strip():
            raise UserError("No command to run: pass one, e.g. dynos run bash.")
        dyno_size = find_size(size) if size else DEFAULT_SIZE
        taken = [r.number for r in self._control.dynos(app.id) if r.one_off]
        record = DynoRecord(
            app_id=app.id,
            app_name=app.name,
            type="run",
            number=pick_run_number(taken),
            release_version=release.version,
            release_id=release.id,
            size=dyno_size,
            command=expand_command(command, release.processes),
            one_off=True,
        )
        self._control.add(record)
        if attach:
            deadline = self._clock() + ATTACH_TIMEOUT
            record.attachment = Attachment(tty, dict(env or {}), deadline)
        else:
            await self._control.launch(record, release, env=env)
        return record

    async def attach(self, app_id: str, name: str, token: str) -> Terminal:
        """Connect a client to the attached one-off dyno ``name``: start its process with
        the client's terminal, which it returns.

        Raises NotFound for an unknown dyno, Unauthorized for a wrong token, Conflict when a
        client is attached already.
        """
        record = self._control.find_dyno(app_id, name)
        attachment = record.attachment
        if attachment is None or not hmac.compare_digest(
            attachment.token.encode(),
            token.encode(),  # bytes: any token, even not ASCII
        ):
            raise Unauthorized(f"Wrong attach token for {name}: use the dyno's attach_url.")
        if attachment.terminal is not None:
            raise Conflict(f"{name} has a client attached already.")
        cols, rows = window_size(attachment.env)
        attachment.terminal = Terminal(tty=attachment.tty, cols=cols, rows=rows)
        release = await self._store.get_release(app_id, record.release_id)
        await self._control.launch(
            record, release, env=attachment.env, terminal=attachment.terminal
        )
        return attachment.terminal

    async def run_release_command(
        self, app_id: str, release: Release, size: DynoSize
    ) -> tuple[DynoRecord, Terminal]:
        """Start ``release``'s release command as the one-off dyno ``release.NNNN``; return
        it and the pipes of its output and exit status (:meth:`Terminal.output`,
        :meth:`Terminal.exit_status`). A process that cannot start ends with status 1."""
        app = await self._store.get_app(app_id)
        taken = [r.number for r in self._control.dynos(app.id) if r.type == RELEASE_TYPE]
        record = DynoRecord(
            app_id=app.id,
            app_name=app.name,
            type=RELEASE_TYPE,
            number=pick_run_number(taken),
            release_version=release.version,
            release_id=release.id,
            size=size,
            command=release.processes[RELEASE_TYPE],
            one_off=True,
        )
        terminal = Terminal(tty=False)
        # No client to wait for: the platform reads the pipes from the start.
        record.attachment = Attachment(False, {}, math.inf, terminal=terminal)
        self._control.add(record)
        await self._control.launch(record, release, terminal=terminal)
        return record, terminal

    def hang_up(self, record: DynoRecord) -> None:
        """The client of an attached one-off dyno went away: end the dyno."""
        terminal = record.attachment.terminal if record.attachment else None
        if record.stopping or terminal is None or terminal.exited:  # exited: nothing to end
            return
        self._control.platform_log(
            record, "Client connection closed. Sending SIGHUP to all processes"
        )
        terminal.hang_up()
        self._control.stop(record)

    def attach_deadline(self) -> float | None:
        """The earliest time an attached one-off's client may still come, for the manager's
        sleep; None when no one-off waits for one."""
        waiting = [
            r.attachment.deadline
            for r in self._control.all_dynos()
            if r.attachment is not None and r.attachment.terminal is None
        ]
        return min(waiting, default=None)

    def expire_attachments(self) -> None:
        """Give up the attached one-offs whose client did not come in time (R13)."""
        now = self._clock()
        for record in self._control.all_dynos():
            attachment = record.attachment
            if attachment and not attachment.terminal and attachment.deadline <= now:
                self._control.platform_log(
                    record, "Error R13 (Attach error) -> Failed to attach to process"
                )
                log.info(
                    "%s of app %s stopped: no client attached within %.0f s",
                    record.name,
                    record.app_name,
                    ATTACH_TIMEOUT,
                )
                self._control.change_state(record, DynoState.DOWN)
                self._control.forget(record)


def pick_run_number(taken: Collection[int], rng: random.Random | None = None) -> int:
    """A random four-digit number that no one-off dyno of the app uses.

    Raises Conflict when all of them are taken.
    """
    free = [n for n in RUN_NUMBERS if n not in taken]
    if not free:
        raise Conflict("Too many one-off dynos are running: stop some (dynos ps:stop run.NNNN).")
    return (rng or random.SystemRandom()).choice(free)


def expand_command(command: str, processes: Mapping[str, str]) -> str:
    """The command to run: a Procfile process type as the first word stands for its command
    (``dynos run worker --once``, as ``heroku run`` does); anything else runs as it is."""
    first, _, rest = command.strip().partition(" ")
    if first in processes:
        return f"{processes[first]} {rest}".strip()
    return command


def window_size(env: Mapping[str, str]) -> tuple[int, int]:
    """The terminal's columns and rows, as the client sent them in ``COLUMNS`` and ``LINES``
    (the way the Heroku CLI does); 80x24 when they are missing or not numbers."""
    sizes = []
    for key, default in (("COLUMNS", 80), ("LINES", 24)):
        value = env.get(key, "")
        number = value.isascii() and value.isdigit() and len(value) < 6  # not "²", not 10**9
        sizes.append(int(value) if number and 0 < int(value) < 10000 else default)
    return sizes[0], sizes[1]
