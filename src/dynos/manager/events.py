"""The backend's events about the manager's dynos: output, up, boot timeout, OOM kill, exit.

The backend knows a process by its key, which changes with every start of a dyno; this sink
maps keys to the manager's records, says what happened in the app's log (Heroku's words),
and moves the dyno through the transition table. What a dyno's exit leads to depends on why
it exited: a one-off completes, a dyno put to sleep goes idle, a stopped one is forgotten,
and any other crashed, to be restarted by the policy after its back-off.
"""

from __future__ import annotations

from collections.abc import Callable

from dynos.core.restart_policy import says_port_taken
from dynos.core.states import DynoState
from dynos.logs.hub import LogHub
from dynos.manager.control import DynoControl
from dynos.manager.records import DynoRecord


class DynoEventSink:
    """The manager's :class:`~dynos.backends.base.DynoEvents`."""

    def __init__(self, control: DynoControl, logs: LogHub, clock: Callable[[], float]) -> None:
        self._control = control
        self._logs = logs
        self._clock = clock
        self._records: dict[str, DynoRecord] = {}  # by the backend's key of its process

    def track(self, record: DynoRecord) -> None:
        """Follow the events of ``record``'s process, just started under ``record.key``."""
        assert record.key is not None
        self._records[record.key] = record

    def dyno_output(self, key: str, line: str) -> None:
        record = self._records.get(key)
        if record is not None:
            self._logs.emit(record.app_name, "app", record.name, line)
            # Also when up: whoever else holds the port answers the boot probe for it.
            if record.port is not None:
                record.port_taken = record.port_taken or says_port_taken(line)

    def dyno_up(self, key: str) -> None:
        record = self._records.get(key)
        if record is None or record.stopping or record.state is not DynoState.STARTING:
            return
        backend = self._control.backend
        record.host = backend.address(key) or record.host
        placement = backend.placement(key)
        record.port = placement.port or record.port
        record.node = placement.node
        if record.checks.gating and record.port is not None:
            self._control.check_startup(record)  # up, and routed, once they pass
            return
        self._control.change_state(record, DynoState.UP)
        self._control.watch_liveness(record)
        self._control.publish_routes()
        if record.held:
            self._control.wake()  # a preboot waits for it

    def dyno_boot_timeout(self, key: str) -> None:
        record = self._records.get(key)
        if record is None or record.stopping:
            return
        path = record.health_path
        failed = f"did not answer GET {path} with 2xx/3xx" if path else "failed to bind to $PORT"
        self._control.platform_log(
            record,
            f"Error R10 (Boot timeout) -> Web process {failed} within "
            f"{self._control.settings.boot_timeout:g} seconds of launch",
        )
        self._control.platform_log(record, "Stopping process with SIGKILL")
        self._control.backend.kill(key)

    def dyno_oom_killed(self, key: str) -> None:
        record = self._records.get(key)
        if record is not None and not record.memory_killed:
            record.memory_killed = True
            self._control.platform_log(record, "Error R15 (Memory quota vastly exceeded)")
            self._control.platform_log(record, "Stopping process with SIGKILL")

    def dyno_exited(self, key: str, status: int) -> None:
        record = self._records.pop(key, None)
        if record is None:
            return
        record.key = None
        self._control.platform_log(record, f"Process exited with status {status}")
        if record.one_off:  # done, never restarted; an attached client gets the status last
            self._control.change_state(record, DynoState.COMPLETE)
            if record.attachment is not None and record.attachment.terminal is not None:
                record.attachment.terminal.finish(status)
            self._control.forget(record)
        elif record.idling:
            record.idling = record.stopping = False
            record.move_to(DynoState.IDLE)  # silent: manager/idling.py said "up to down"
        elif record.stopping:
            self._control.change_state(record, DynoState.DOWN)
            if record.replaced:  # kept, down, for the reconcile to start its successor
                record.stopping = record.replaced = False
            else:
                self._control.forget(record)
        else:
            now = self._clock()
            policy = self._control.settings.restart_policy
            record.crashes = policy.crash_count(record.crashes, record.started_at, now)
            record.restart_at = now + policy.delay(record.crashes, record.port_taken)
            if record.port_taken:
                self._control.platform_log(
                    record, f"Port {record.port} was taken by another process: a new one at restart"
                )
                record.port_taken = False
            self._control.change_state(record, DynoState.CRASHED)
        self._control.publish_routes()
        self._control.wake()
