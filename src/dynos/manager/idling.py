"""Idling: a lone web dyno of a small size sleeps after a quiet spell and wakes on a request.

The rule is pure (:func:`dynos.core.idling.idle_action`); this module applies it to the
manager's dynos. The watch calls :meth:`Idler.check` on its tick; the router calls
:meth:`Idler.wake_app` (through the manager) when a request comes for a sleeping app.

A dyno put to sleep is stopped like any other, with ``idling`` set: when its process exits
the manager moves it from ``up`` to ``idle`` (through the transition table) instead of
forgetting it. Heroku's log says "State changed from up to down" when idling starts, so this
module says it then, and the move to ``idle`` is silent.
"""

from __future__ import annotations

from dynos.core.idling import IdleAction, idle_action
from dynos.core.reconcile import StartDyno
from dynos.core.states import DynoState
from dynos.manager.control import DynoControl
from dynos.manager.records import DynoRecord
from dynos.router.routing_table import RoutingTable


class Idler:
    def __init__(self, control: DynoControl, routes: RoutingTable) -> None:
        self._control = control
        self._routes = routes

    def check(self, now: float) -> None:
        """Put to sleep the apps that have been quiet long enough; wake the sleeping ones
        that may no longer idle (scaled out or up)."""
        default = self._control.settings.idle_after
        for state in self._control.view:
            app = state.app
            web = next((f for f in state.formation if f.type == "web"), None)
            dynos = [d for d in self._control.dynos(app.id) if d.type == "web"]
            idle_after = float(state.settings.get("idle_after", default))  # type: ignore[arg-type]
            action = idle_action(
                (web.quantity, web.size) if web else None,
                dynos,
                self._routes.last_request_at(app.name),
                now,
                idle_after,
            )
            if action is IdleAction.WAKE:
                self.wake_app(app.name)
            elif action is IdleAction.SLEEP:
                self.put_to_sleep(dynos[0])

    def put_to_sleep(self, record: DynoRecord) -> None:
        """Idle a lone web dyno: out of the rotation, stopped, shown as ``idle``."""
        self._control.platform_log(record, "Idling")
        self._control.platform_log(record, f"State changed from {record.state} to down")
        record.idling = True
        self._control.stop(record)

    def wake_app(self, app_name: str) -> None:
        """A request came for an app whose web dyno sleeps: start it now."""
        for record in self._control.all_dynos():
            if record.app_name != app_name or record.state is not DynoState.IDLE:
                continue
            self._control.platform_log(record, "Unidling")
            state = next((s for s in self._control.view if s.app.id == record.app_id), None)
            release = state.release if state else None
            if state is None or release is None:
                return
            entry = next((f for f in state.formation if f.type == record.type), None)
            if entry is None or record.type not in release.processes:
                return
            action = StartDyno(
                record.app_id,
                record.type,
                record.number,
                release.version,
                entry.size,
                release.processes[record.type],
            )
            self._control.start_again(action)
