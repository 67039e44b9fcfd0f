"""The release phase, as Heroku runs it: its states, when it runs, and how it ends.

A Procfile's ``release`` process type is no process type of the formation: its command runs
once per new release, in a one-off dyno, after a successful build and before the release
goes live. While it runs the release is ``pending``; it becomes ``succeeded`` (the dynos
restart on it) or ``failed`` (the release before it keeps serving). A release without a
release phase is ``succeeded`` as it is made.

Heroku runs the phase for every new release (a deploy, a config var set by the user, a
rollback, a new add-on) except those an add-on makes by changing the config vars it manages:
here, detaching an add-on (Dev Center, "Release Phase").

Everything here is pure: the platform and the manager carry the decisions out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

RELEASE_TYPE = "release"  # the Procfile's process type that holds the release command
RELEASE_TIMEOUT = 3600.0  # seconds: Heroku's release phase limit (1 hour)
MAX_OUTPUT = 4 * 1024 * 1024  # bytes of a release command's output kept for releases:output


class ReleaseStatus(StrEnum):
    """A release's ``status`` in the Platform API."""

    PENDING = "pending"  # its release command is running: it is not live yet
    SUCCEEDED = "succeeded"  # live, or was
    FAILED = "failed"  # its release command failed: it never went live


TRANSITIONS: dict[ReleaseStatus, frozenset[ReleaseStatus]] = {
    ReleaseStatus.PENDING: frozenset({ReleaseStatus.SUCCEEDED, ReleaseStatus.FAILED}),
    ReleaseStatus.SUCCEEDED: frozenset(),
    ReleaseStatus.FAILED: frozenset(),
}


def check_status_change(old: ReleaseStatus, new: ReleaseStatus) -> None:
    """Raise ValueError when a release may not go from ``old`` to ``new`` (a finished
    release never changes again: its phase ran once)."""
    if new not in TRANSITIONS[old]:
        raise ValueError(f"a release cannot go from {old} to {new}")


class Trigger(StrEnum):
    """What made a release."""

    DEPLOY = "deploy"
    CONFIG = "config"  # config vars set or unset by the user
    ROLLBACK = "rollback"
    ADDON_ATTACH = "addon-attach"  # a new add-on's config var
    ADDON_DETACH = "addon-detach"  # an add-on's config var removed with it
    ADDON_MOVED = "addon-moved"  # the platform moved an add-on's server: its URL changed


def release_command(processes: Mapping[str, str]) -> str | None:
    return processes.get(RELEASE_TYPE)


def runs_release_phase(processes: Mapping[str, str], slug_id: str | None, trigger: Trigger) -> bool:
    """Whether a new release made by ``trigger`` runs its release command first."""
    if slug_id is None or release_command(processes) is None:
        return False
    # The platform's own changes go live at once: the release command is the app's, for its
    # code and its config, and the dynos must not wait on it for a server that moved.
    return trigger not in (Trigger.ADDON_DETACH, Trigger.ADDON_MOVED)


def initial_status(
    processes: Mapping[str, str], slug_id: str | None, trigger: Trigger
) -> ReleaseStatus:
    if runs_release_phase(processes, slug_id, trigger):
        return ReleaseStatus.PENDING
    return ReleaseStatus.SUCCEEDED


def formation_types(processes: Mapping[str, str]) -> list[str]:
    """The process types that belong in the formation: all but ``release``."""
    return [type_ for type_ in processes if type_ != RELEASE_TYPE]


class PhaseEnd(StrEnum):
    """How a release command's run ended."""

    EXITED = "exited"  # its process exited (with the status given beside it)
    TIMED_OUT = "timed-out"  # past the release timeout: it was stopped
    INTERRUPTED = "interrupted"  # the server stopped (or died) while it ran
    ERROR = "error"  # the platform could not run it (its server's log says why)


@dataclass(frozen=True)
class PhaseOutcome:
    """The end of one run of a release command, and what it makes of the release."""

    end: PhaseEnd
    exit_status: int | None = None  # EXITED: 0, 1..127, or 128 + a signal

    @property
    def status(self) -> ReleaseStatus:
        if self.end is PhaseEnd.EXITED and self.exit_status == 0:
            return ReleaseStatus.SUCCEEDED
        return ReleaseStatus.FAILED

    def reason(self, timeout: float) -> str:
        """Why the release command failed, in one sentence (the output's last line)."""
        if self.end is PhaseEnd.TIMED_OUT:
            return (
                f"Release command timed out after {describe_seconds(timeout)} (the server's "
                "--release-timeout) and was stopped."
            )
        if self.end is PhaseEnd.INTERRUPTED:
            return "The dynos server stopped while the release command was running."
        if self.end is PhaseEnd.ERROR:
            return "The platform could not run the release command: the server's log says why."
        status = self.exit_status
        if status is not None and status > 128:
            return f"Release command was killed by signal {status - 128} (status {status})."
        return f"Release command exited with status {status}."


def failure_message(app: str, version: int, live_version: int | None, reason: str) -> str:
    """What a user reads when a release phase failed: what happened, what still serves,
    and what to do."""
    serving = (
        f"v{live_version} keeps serving" if live_version is not None else "nothing was released"
    )
    return (
        f"Release v{version} failed: {reason} Its dynos were not started and {serving}. "
        f"See the output with 'dynos releases:output v{version} -a {app}', fix the release "
        "command and deploy again."
    )


def describe_seconds(seconds: float) -> str:
    """``1 hour``, ``15 minutes``, ``2.5 seconds``."""
    whole = round(seconds)
    if whole == seconds and whole >= 60:
        hours, rest = divmod(whole, 3600)
        if not rest:
            return f"{hours} hour{'s' if hours != 1 else ''}"
        minutes, rest = divmod(whole, 60)
        if not rest:
            return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


LINE_LIMIT = 64 * 1024  # bytes: a longer output line is passed on in pieces


class LineSplitter:
    """A stream of output bytes into lines (without their ending), for one output channel.

    A line longer than LINE_LIMIT comes out in pieces, so a command that never writes a
    newline cannot make the platform hold its output without end.
    """

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        self._limit = limit
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        self._pending += data
        *complete, self._pending = self._pending.split(b"\n")
        limit = self._limit
        lines = [raw[i : i + limit] for raw in complete for i in range(0, len(raw) or 1, limit)]
        while len(self._pending) > limit:
            lines.append(self._pending[:limit])
            self._pending = self._pending[limit:]
        return [_text(raw) for raw in lines]

    def flush(self) -> list[str]:
        """What is left once the stream has ended: a last line without its newline."""
        rest, self._pending = self._pending, b""
        return [_text(rest)] if rest else []


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")
