"""The desired half of reconciliation: what each app's formation asks to run, from the
manager's view of the store (its ``AppState``s), for the pure planner (core/reconcile.py)."""

from __future__ import annotations

from collections.abc import Iterable

from dynos.core.reconcile import DesiredApp, DesiredProcess
from dynos.store.models import AppState


def desired_apps(view: Iterable[AppState]) -> list[DesiredApp]:
    desired = []
    for state in view:
        release = state.release
        if release is None or release.slug_id is None:
            # No code is live (its first deploy's release phase may be running): no
            # formation dyno runs, but the app is wanted, so its one-off dynos are kept.
            desired.append(DesiredApp(state.app.id, release.version if release else 0, ()))
            continue
        processes = tuple(
            DesiredProcess(f.type, f.quantity, f.size, release.processes[f.type])
            for f in state.formation
            if f.type in release.processes
        )
        desired.append(DesiredApp(state.app.id, release.version, processes))
    return desired
