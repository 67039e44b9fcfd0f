"""What the manager's helpers (the event sink, the watch, idling, the one-off runner) may ask
of it.

The manager owns the dyno records and is the only one that starts and stops processes; its
helpers act through this protocol, which :class:`~dynos.manager.manager.DynoManager`
implements. They import this module, never manager.py, so the manager can import them without
an import circle (tests/test_architecture.py keeps it so).
"""

from __future__ import annotations

from typing import Protocol

from dynos.backends.attach import Terminal
from dynos.backends.base import Backend
from dynos.core.reconcile import StartDyno
from dynos.core.states import DynoState
from dynos.manager.records import DynoRecord
from dynos.manager.settings import ManagerSettings
from dynos.store.models import AppState, Release


class DynoControl(Protocol):
    @property
    def backend(self) -> Backend: ...

    @property
    def settings(self) -> ManagerSettings: ...

    @property
    def view(self) -> list[AppState]:
        """Every app's desired state, as the last reconcile read it."""
        ...

    def all_dynos(self) -> list[DynoRecord]: ...

    def dynos(self, app_id: str) -> list[DynoRecord]:
        """The app's dynos, by type then number."""
        ...

    def find_dyno(self, app_id: str, name_or_id: str) -> DynoRecord:
        """The app's dyno by name or id; NotFound when there is none."""
        ...

    def add(self, record: DynoRecord) -> None:
        """Track a new dyno (a one-off: the formation's are made by reconciling)."""
        ...

    def wake(self) -> None:
        """Reconcile soon."""
        ...

    def platform_log(self, record: DynoRecord, message: str) -> None: ...

    def publish_routes(self) -> None:
        """Push every app's routable web dynos to the router's table."""
        ...

    def change_state(self, record: DynoRecord, state: DynoState) -> None:
        """Move ``record`` through the transition table and say so in its app's log."""
        ...

    async def launch(
        self,
        record: DynoRecord,
        release: Release,
        *,
        env: dict[str, str] | None = None,
        terminal: Terminal | None = None,
    ) -> None:
        """Start ``record``'s process from ``release``."""
        ...

    def start_again(self, action: StartDyno) -> None:
        """Start a tracked, not running dyno (an idle one) in the background."""
        ...

    def stop(self, record: DynoRecord) -> None:
        """SIGTERM ``record``'s process (after draining a web dyno), or forget it when it
        runs none."""
        ...

    def rename(self, record: DynoRecord, retired_name: str | None) -> None:
        """Track ``record`` under its retired name during a preboot (None: its own again)."""
        ...

    def check_startup(self, record: DynoRecord) -> None:
        """``record`` listens on its port: run its startup checks, then make it up."""
        ...

    def watch_liveness(self, record: DynoRecord) -> None:
        """``record`` is up: run its liveness checks while it stays so."""
        ...

    def forget(self, record: DynoRecord) -> None:
        """Stop tracking ``record``, whose process is gone."""
        ...
