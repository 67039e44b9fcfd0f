"""What every use-case of the platform works with, and the two things they all do.

:class:`Services` is the store, the manager, the log hub and the account: the
:class:`~dynos.platform.platform.Platform` has them, and hands itself to the use-cases of
each concern (:mod:`~dynos.platform.releases`, :mod:`~dynos.platform.dynos`,
:mod:`~dynos.platform.addons`), which depend on this protocol and not on Platform, so that
no module of platform/ imports another in a circle.

:func:`api_log` writes the ``app[api]: ... by user ...`` line Heroku writes for each user
action; :func:`announce_release` says a release was made and lets the dynos restart on it, or
starts its release phase first (platform/release_phase.py).
Every use-case logs through these two, so the lines read the same wherever they come from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

from dynos.core.release_phase import ReleaseStatus
from dynos.errors import DynosError
from dynos.logs.hub import LogHub
from dynos.logs.logline import APP
from dynos.manager.manager import DynoManager
from dynos.store.models import App, Release
from dynos.store.store import Store


@dataclass(frozen=True)
class Account:
    id: str
    email: str


class PhaseRunner(Protocol):
    def start(self, app: App, release: Release) -> None: ...


class Services(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def manager(self) -> DynoManager: ...

    @property
    def logs(self) -> LogHub: ...

    @property
    def account(self) -> Account: ...

    @property
    def release_phases(self) -> PhaseRunner: ...


def api_log(services: Services, app: App, message: str) -> None:
    """An ``app[api]`` log line, as Heroku writes one for each user action."""
    email = services.account.email
    services.logs.emit(app.name, APP, "api", f"{message} by user {email}")


def announce_release(services: Services, app: App, description: str, release: Release) -> None:
    """Log what made ``release`` and that it was created, then wake the manager, which
    restarts the dynos on it; a pending release runs its release phase first, and the dynos
    restart only if it succeeds. Call it once the release's transaction has committed."""
    api_log(services, app, description)
    api_log(services, app, f"Release v{release.version} created")
    if release.status is ReleaseStatus.PENDING:
        services.release_phases.start(app, release)
    services.manager.wake()


async def route_now(services: Services) -> None:
    """Wake the manager, and push the router's table from the store at once: for a change
    the router must follow before the request answers (a custom domain, a renamed or
    destroyed app, a request timeout). The change is committed: a store that cannot be read
    right now must not turn it into an error (the reconcile that wake() asked for publishes
    it, or logs why not)."""
    services.manager.wake()
    with contextlib.suppress(DynosError):
        await services.manager.refresh()
