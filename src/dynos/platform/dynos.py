"""The formation and the dynos: scale, restart, stop, one-off dynos and attaching to them.

The formation (how many dynos of each process type, at which size) is desired state in the
store; the dynos are what the manager runs. Scaling writes the formation and wakes the
manager; a restart or a stop only marks dynos for the manager, which does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psutil

from dynos.backends.attach import Terminal
from dynos.core.scale import (
    FormationEntry,
    ScaleChange,
    apply_changes,
    format_formation,
    memory_warning,
)
from dynos.errors import NotFound
from dynos.manager.records import DynoRecord
from dynos.platform.context import Services, api_log
from dynos.store.database import Database
from dynos.store.models import App, Formation


@dataclass(frozen=True)
class Attached:
    """A client's connection to an attached one-off dyno: its terminal, and what ends the
    dyno when the client goes away."""

    terminal: Terminal
    hang_up: Callable[[], None]


class Dynos:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._store = services.store
        self._manager = services.manager

    # -- formation -----------------------------------------------------------------------------

    async def formation(self, app: App) -> list[Formation]:
        return await self._store.formation(app.id)

    async def formation_entry(self, app: App, type_or_id: str) -> Formation:
        """The formation entry of a process type, by type name or by the entry's id."""
        for entry in await self.formation(app):
            if type_or_id in (entry.type, entry.id):
                return entry
        raise NotFound(f"No such process type {type_or_id!r}. Run 'dynos ps:scale' to list them.")

    async def type_name(self, app: App, type_or_id: object) -> object:
        """The process type a formation update names: by type, or by the entry's id (anything
        else comes back as it is, for the scale change to refuse)."""
        for entry in await self.formation(app):
            if type_or_id == entry.id:
                return entry.type
        return type_or_id

    async def scale(
        self, app: App, changes: list[ScaleChange], by_user: bool = True
    ) -> list[Formation]:
        """Apply ``ps:scale`` / ``ps:type`` changes; all of them, or none when one is wrong.
        ``by_user`` false: the platform scales (the autoscaler logs a line of its own)."""

        def scale_in_db(db: Database) -> tuple[list[FormationEntry], list[Formation]]:
            current = {f.type: f for f in db.formation(app.id)}
            updated = apply_changes(current, changes)  # UserError: nothing written
            for entry in updated.values():
                db.set_formation(app.id, entry.type, entry.quantity, entry.size)
            return list(updated.values()), [f for f in db.formation(app.id) if f.type in updated]

        updated, formation = await self._store.transaction(scale_in_db)
        if by_user:
            scaled = format_formation(updated).replace("=", "@")
            api_log(self._services, app, f"Scaled to {scaled}")
        self._manager.wake()
        return formation

    async def memory_warning(self, app: App) -> str | None:
        """What to warn of after a scale: a formation that needs more memory than the host."""
        return memory_warning(await self.formation(app), psutil.virtual_memory().total)

    # -- dynos ---------------------------------------------------------------------------------

    def list(self, app: App) -> list[DynoRecord]:
        """The app's dynos, by type then number."""
        return self._manager.dynos(app.id)

    def find(self, app: App, name_or_id: str) -> DynoRecord:
        return self._manager.find_dyno(app.id, name_or_id)  # NotFound

    def restart(self, app: App, target: str | None, verb: str = "Restart") -> None:
        """Restart the app's dynos: all, one process type, or one dyno (``verb`` "Stop":
        the same, said so; a formation's dynos start again, as on Heroku, and a one-off
        dyno stops for good)."""
        self._manager.request_restart(app.id, target)
        api_log(self._services, app, f"{verb} {target}" if target else verb)

    async def restart_type(self, app: App, type_or_id: str, verb: str = "Restart") -> None:
        """Restart (or stop) every dyno of a formation type (by type or entry id), or of
        ``run`` (one-off dynos, which are in no formation: naming them stops them).
        NotFound when it is neither."""
        running = {d.type for d in self.list(app)}
        type_ = type_or_id
        if type_or_id not in running:
            type_ = (await self.formation_entry(app, type_or_id)).type
        if type_ in running:
            self._manager.request_restart(app.id, type_)
        api_log(self._services, app, f"{verb} {type_}")

    # -- one-off dynos -------------------------------------------------------------------------

    async def run(
        self,
        app: App,
        command: str,
        *,
        size: str | None = None,
        env: dict[str, str] | None = None,
        attach: bool = False,
        tty: bool = True,
    ) -> DynoRecord:
        """Run ``command`` as a one-off dyno ``run.NNNN`` (see DynoManager.run_one_off)."""
        return await self._manager.run_one_off(
            app.id, command, size=size, env=env, attach=attach, tty=tty
        )

    async def attach(self, app: App, name: str, token: str) -> Attached:
        """Connect a client to the attached one-off dyno ``name``, which starts now.

        Raises NotFound for an unknown dyno, Unauthorized for a wrong token, Conflict when a
        client is attached already.
        """
        terminal = await self._manager.attach(app.id, name, token)
        record = self._manager.find_dyno(app.id, name)
        return Attached(terminal, lambda: self._manager.hang_up(record))
