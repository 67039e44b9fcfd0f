"""What the manager knows of each dyno it runs: the actual half of reconciliation."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dynos.backends.attach import Terminal
from dynos.core.healthchecks import NO_CHECKS, HealthChecks
from dynos.core.reconcile import RunningDyno
from dynos.core.sizes import DynoSize
from dynos.core.states import DynoState, check_transition
from dynos.errors import DynosError

log = logging.getLogger(__name__)


@dataclass
class Attachment:
    """An attached one-off dyno's client: the secret it must show, and once connected its
    terminal (see manager/one_off.py)."""

    tty: bool
    env: dict[str, str]  # the one-off's own env, on top of the config vars
    deadline: float  # clock time after which a client that has not come is given up
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    terminal: Terminal | None = None


@dataclass
class DynoRecord:
    app_id: str
    app_name: str
    type: str
    number: int
    release_version: int
    release_id: str
    size: DynoSize
    command: str
    state: DynoState = DynoState.STARTING
    key: str | None = None  # the backend's key of the current process, None once it exited
    port: int | None = None
    host: str = "127.0.0.1"  # where the router reaches it on its port (Backend.address)
    node: str | None = None  # the cluster node it runs on (Backend.placement), None: here
    health_path: str | None = None  # web: the path its readiness probe asks, if the app set one
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: float = 0.0  # clock time of the current process's start
    crashes: int = 0  # consecutive crashes, for the restart policy
    restart_at: float | None = None
    stopping: bool = False
    # Stopped to be replaced (restart, new release, size or command): once its process exits
    # it stays, down, until the reconcile starts its successor, so the name never disappears
    # while the formation wants it (a client that saw it up can still name it).
    replaced: bool = False
    restart_requested: bool = False
    idling: bool = False  # being stopped to sleep: its exit makes it idle, not gone
    memory_reported_at: float | None = None  # last R14 report, to say it once a minute
    memory_killed: bool = False  # R15 already said for the current process
    port_taken: bool = False  # the current process said its $PORT was in use
    scratch_full: bool = False  # its private scratch is full (said once until it is not)
    one_off: bool = False  # run.NNNN, started by `dynos run`: never restarted
    attachment: Attachment | None = None  # an attached one-off's client, until the dyno ends
    checks: HealthChecks = NO_CHECKS  # web: its release's app.json health checks
    # Preboot (manager/preboot.py): a new dyno is held out of the router until the switch;
    # an old one serves under its retired name (web.1.v5) while the new web.1 boots.
    held: bool = False
    retired_name: str | None = None

    @property
    def name(self) -> str:
        return self.retired_name or f"{self.type}.{self.number}"

    def move_to(self, state: DynoState) -> DynoState:
        """Change state (checked against the transition table); return the old state.

        The one place a dyno's state is assigned: tests/test_architecture.py holds every
        other module to it."""
        old = self.state
        check_transition(old, state)
        self.state = state
        self.updated_at = datetime.now(UTC)
        return old

    def snapshot(self) -> RunningDyno:
        return RunningDyno(
            app_id=self.app_id,
            type=self.type,
            number=self.number,
            release_version=self.release_version,
            size=self.size,
            command=self.command,
            state=self.state,
            stopping=self.stopping,
            restart_requested=self.restart_requested,
            restart_at=self.restart_at,
            one_off=self.one_off,
        )


def start_failure(key: str, exc: Exception) -> str:
    """The app's log line for a dyno whose start raised ``exc``. A typed error says what to
    do; anything else is a bug, logged with its traceback for the maintainers, and still only
    that dyno's crash: one app's failure must not stop the reconcile loop (and with it the
    server) for every app."""
    if isinstance(exc, DynosError):
        return exc.message
    log.error("starting dyno %s failed unexpectedly", key, exc_info=exc)
    return "The dyno could not be started (an internal error: see the server's log)."
