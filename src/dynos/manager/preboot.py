"""Preboot's shell: begins an app's preboot, feeds what the dynos do to the pure machine
(core/preboot.py), and carries out its steps through the manager.

At each reconcile, before the planner: every preboot under way is advanced; then an app with
the ``preboot`` feature whose serving web dynos are outdated (``should_preboot``) begins one:
its old web dynos are renamed (``web.1`` -> ``web.1.v5``: they serve on, routed under that
name), and new ``web.1`` .. ``web.N`` start on the new release, held out of the router.
The planner leaves the app's web dynos alone while it runs (``held``), and never rolls an
outdated serving web dyno of a preboot app itself (``preboot_types``).

Names, as ``ps`` shows them during a preboot: the new dynos have the formation's names
(``web.1`` ..., as on Heroku, and ``DYNO=web.1`` in their environment); the old ones carry
their release (``web.1.v5``) until they stop. If the new ones fail, the old ones get their
names back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from dynos.core.healthchecks import HealthChecks
from dynos.core.preboot import (
    Finished,
    Preboot,
    PrebootPhase,
    RestoreOld,
    StopNew,
    SwitchTraffic,
    Target,
    WebDynoView,
    advance,
    retired_name,
    should_preboot,
)
from dynos.core.reconcile import DesiredApp
from dynos.core.sizes import find_size
from dynos.core.states import DynoState
from dynos.manager.control import DynoControl
from dynos.manager.records import DynoRecord
from dynos.store.models import AppState

log = logging.getLogger(__name__)

PREBOOT = "preboot"
WEB = "web"
MARGIN = 5.0  # seconds past the boot timeout and the checks' own budget before giving up


def target_of(app: DesiredApp) -> Target | None:
    for process in app.processes:
        if process.type == WEB:
            return Target(app.release_version, process.size.name, process.command, process.quantity)
    return None


def check_budget(checks: HealthChecks) -> float:
    """The longest the gating checks can take once a dyno listens: every attempt timing out."""
    return sum(c.initial_delay + c.attempts * (c.timeout + c.wait) for c in checks.gating)


class Preboots:
    def __init__(
        self,
        control: DynoControl,
        checks_of: Callable[[str], HealthChecks],
        clock: Callable[[], float],
    ) -> None:
        """``checks_of``: a slug id's health checks (the manager reads and keeps them)."""
        self._control = control
        self._checks_of = checks_of
        self._clock = clock
        self._active: dict[str, Preboot] = {}  # by app id
        self._failed: dict[str, Target] = {}  # by app id: the last target that failed

    def held(self) -> frozenset[tuple[str, str]]:
        """The (app, type) pairs the planner must leave alone now."""
        return frozenset((app_id, WEB) for app_id in self._active)

    @staticmethod
    def preboot_types(view: Iterable[AppState]) -> frozenset[tuple[str, str]]:
        return frozenset((s.app.id, WEB) for s in view if PREBOOT in s.features)

    async def tick(self, view: Mapping[str, AppState], desired: Iterable[DesiredApp]) -> None:
        """Advance the preboots under way, then begin those now due."""
        targets = {app.app_id: target_of(app) for app in desired}
        for app_id, preboot in list(self._active.items()):
            self._advance(app_id, preboot, targets.get(app_id))
        for app_id, state in view.items():
            if PREBOOT not in state.features or app_id in self._active:
                continue
            target = targets.get(app_id)
            web = [r for r in self._web(app_id) if r.retired_name is None]
            views = [_view(r) for r in web]
            if should_preboot(target, views, self._failed.get(app_id)):
                assert target is not None
                await self._begin(state, target, web)

    def _web(self, app_id: str) -> list[DynoRecord]:
        return [r for r in self._control.dynos(app_id) if r.type == WEB and not r.one_off]

    async def _begin(self, state: AppState, target: Target, old: list[DynoRecord]) -> None:
        release = state.release
        assert release is not None and release.slug_id is not None
        now = self._clock()
        budget = self._control.settings.boot_timeout + check_budget(
            self._checks_of(release.slug_id)
        )
        retired = []
        for record in old:
            record.restart_requested = False  # this preboot is the restart asked for
            self._control.rename(record, retired_name(record.name, record.release_version))
            retired.append(record.name)
        new = [
            DynoRecord(
                state.app.id,
                state.app.name,
                WEB,
                number,
                release.version,
                release.id,
                find_size(target.size),
                target.command,
                held=True,
            )
            for number in range(1, target.quantity + 1)
        ]
        self._active[state.app.id] = Preboot(
            target, tuple(r.name for r in new), tuple(retired), now + budget + MARGIN
        )
        self._control.publish_routes()  # the old dynos, under their retired names
        log.info("preboot of %s v%d: %d new web dynos", state.app.name, release.version, len(new))
        for record in new:
            self._control.add(record)
            self._control.platform_log(
                record,
                f"Preboot of v{release.version}: starting beside {', '.join(retired)}, which "
                "serve until every new web dyno passes its health checks",
            )
            await self._control.launch(record, release)

    def _advance(self, app_id: str, preboot: Preboot, target: Target | None) -> None:
        records = {r.name: r for r in self._web(app_id)}
        new_states: dict[str, DynoState | None] = {}
        for name in preboot.new:
            record = records.get(name)
            new_states[name] = None if record is None or record.retired_name else record.state
        old_left = sum(1 for name in preboot.old if name in records)
        preboot, steps = advance(preboot, new_states, old_left, target, self._clock())
        for step in steps:
            self._carry_out(step, records)
        if preboot.phase is PrebootPhase.FAILED:
            self._failed[app_id] = preboot.target
        if preboot.finished:
            del self._active[app_id]
        else:
            self._active[app_id] = preboot

    def _carry_out(
        self, step: SwitchTraffic | StopNew | RestoreOld | Finished, records: dict[str, DynoRecord]
    ) -> None:
        if isinstance(step, SwitchTraffic):
            new = [records[n] for n in step.new]
            old = [records[n] for n in step.old if n in records]
            # One change of the routing table: every new dyno in, every old one out.
            for record in new:
                record.held = False
            for record in old:
                record.stopping = True
            self._control.publish_routes()
            for record in new:
                self._control.platform_log(record, "Preboot: every new web dyno passed: switched")
            for record in old:
                self._control.stop(record)  # drains (it is out of the rotation), then SIGTERM
        elif isinstance(step, StopNew):
            for name in step.names:
                stopping = records.get(name)
                if stopping is None:
                    continue
                self._control.platform_log(
                    stopping, f"Preboot failed: {step.reason}; the old web dynos serve on"
                )
                if not stopping.stopping:
                    self._control.stop(stopping)
            log.warning("preboot failed: %s", step.reason)
        elif isinstance(step, RestoreOld):
            for name in step.names:
                restored = records.get(name)
                if restored is not None:
                    self._control.rename(restored, None)
            self._control.publish_routes()
        # Finished: the old dynos said their own stops; nothing is left to do.


def _view(record: DynoRecord) -> WebDynoView:
    return WebDynoView(
        record.name,
        record.state,
        record.release_version,
        record.size.name,
        record.command,
        record.stopping,
        record.restart_requested,
    )
