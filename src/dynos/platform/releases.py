"""Releases: deploys, rollbacks and config vars, each of which makes a new release.

A release is immutable (a slug, the Procfile's process types, the config vars); every change
to code or config makes a new one, which the manager then restarts the dynos on. One with a
``release`` process type is ``pending`` first, while its release command runs
(platform/release_phase.py), and goes live only if that succeeds; while an app has a pending
release, no other release of it can be made (Conflict), so that releases go live in the
order they were made and each builds on the live one. A
read-modify-write (a new release from the current one's config) is one function run in the
store's thread inside one transaction (:func:`release_config`), so two requests at once
cannot interleave inside it; logging and waking the manager happen back on the event loop,
once the transaction has committed (:func:`~dynos.platform.context.announce_release`).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dynos.core.config_vars import check_config_var
from dynos.core.release_phase import (
    PhaseEnd,
    PhaseOutcome,
    ReleaseStatus,
    Trigger,
    failure_message,
    initial_status,
    release_command,
)
from dynos.core.sizes import DynoSize
from dynos.errors import Conflict, ReleaseFailed, UserError
from dynos.platform.build import Slug
from dynos.platform.builders import SlugBuilder
from dynos.platform.context import Services, announce_release
from dynos.platform.release_phase import (
    Heartbeat,
    ReleasePhases,
    dyno_size,
    new_output_key,
    sync_formation,
)
from dynos.platform.slug_archive import UnpackLimits, describe_size, slug_size, unpack_slug
from dynos.store.database import Database
from dynos.store.models import App, Release


@dataclass(frozen=True)
class ConfigRelease:
    """What :func:`release_config` made: the config vars now, and the release that holds
    them (None when nothing changed and no release was asked for by name)."""

    config: dict[str, str]
    release: Release | None
    description: str


class Releases:
    def __init__(
        self,
        services: Services,
        builder: SlugBuilder,
        slugs_dir: Path,
        unpack_limits: UnpackLimits,
        phases: ReleasePhases,
    ) -> None:
        self._services = services
        self._store = services.store
        self.builder = builder
        self.phases = phases
        self.slugs_dir = slugs_dir
        self.unpack_limits = unpack_limits

    # -- reading -------------------------------------------------------------------------------

    async def list(self, app: App) -> list[Release]:
        return await self._store.list_releases(app.id)

    async def get(self, app: App, id_or_version: str) -> Release:
        return await self._store.get_release(app.id, id_or_version)

    async def check_can_release(self, app: App) -> None:
        """Conflict while a release phase of ``app`` runs (see :func:`check_no_pending`)."""
        await self._store.call(check_no_pending, app)

    async def by_output_key(self, key: str) -> Release | None:
        """The release whose output_stream_url has this secret, if any."""
        return await self._store.release_by_output_key(key)

    async def current(self, app: App) -> Release | None:
        """The live release: the newest that succeeded."""
        return await self._store.current_release(app.id)

    # -- deploys -------------------------------------------------------------------------------

    async def unpack(self, upload: Path) -> Slug:
        """The slug in an uploaded ``.tar.gz``, unpacked within the limits (UserError past
        them). Off the event loop: a large tarball takes a while."""
        return await asyncio.to_thread(unpack_slug, upload, self.slugs_dir, self.unpack_limits)

    async def deploy(
        self, app: App, slug: Slug, source: str | None = None
    ) -> AsyncGenerator[str | Heartbeat | Release, None]:
        """Build ``slug`` and release it: yields build output lines, then the new Release;
        with a release phase, its output, then the release once it is live.

        A failed build raises BuildFailed after its output; the slug is removed and the
        app keeps its current release and formation. A failed release phase raises
        ReleaseFailed after its output: the release stays (``failed``), the live one serves.
        Conflict, before anything is built, while another release phase of the app runs.
        A build gets the limits of the app's largest dyno size (:meth:`build_size`). The
        release is described as ``Deploy <source>`` (a pushed commit's short id), else by
        the slug's id.
        """
        released = False
        try:
            await self.check_can_release(app)
            if slug.needs_build:
                size, config = await self.build_size(app), await self.config(app)
                async for line in self.builder.build(app.id, slug, size, config):
                    yield line
            yield f"-----> Discovering process types: {', '.join(slug.processes)}"
            known = self.builder.venv_bytes(slug.id)
            size_bytes = await asyncio.to_thread(slug_size, slug.path, known)
            yield f"-----> Slug size: {describe_size(size_bytes)}"
            release = await self._release_slug(app, slug, source or slug.id[:8])
            released = True
            if release.status is ReleaseStatus.PENDING:
                async for item in self.follow_phase(app, release):
                    yield item
            else:
                yield release
        finally:
            if not released:
                shutil.rmtree(slug.path, ignore_errors=True)

    async def follow_phase(
        self, app: App, release: Release
    ) -> AsyncIterator[str | Heartbeat | Release]:
        """A pending release's release command output, as it runs (a Heartbeat in its long
        silences); then the release, live. Raises ReleaseFailed when the phase failed (or
        could not end here)."""
        yield f"-----> Running release command: {release_command(release.processes)}"
        outcome = PhaseOutcome(PhaseEnd.INTERRUPTED)
        async for item in self.phases.follow(release):
            if isinstance(item, PhaseOutcome):
                outcome = item
            elif isinstance(item, Heartbeat):
                yield item
            else:
                yield "       " + item
        final = await self._store.get_release(app.id, release.id)
        if final.status is ReleaseStatus.SUCCEEDED:
            yield final
            return
        live = await self.current(app)
        live_version = live.version if live is not None and live.slug_id else None
        reason = outcome.reason(self.phases.timeout)
        raise ReleaseFailed(failure_message(app.name, final.version, live_version, reason))

    async def build_size(self, app: App) -> DynoSize:
        """The largest size in the app's formation (whatever its quantity: a type scaled to 0
        still runs at its size when scaled up), the default size when it has none yet."""
        return await dyno_size(self._store, app)

    async def _release_slug(self, app: App, slug: Slug, source: str) -> Release:
        description = f"Deploy {source}"

        def release_it(db: Database) -> Release:
            check_no_pending(db, app)  # again: the build took a while
            current = db.current_release(app.id)
            return new_release(
                db,
                app,
                description,
                Trigger.DEPLOY,
                slug_id=slug.id,
                processes=slug.processes,
                config=current.config if current else {},
            )

        release = await self._store.transaction(release_it)
        announce_release(self._services, app, description, release)
        return release

    async def rollback(self, app: App, target: Release) -> Release:
        """Release ``target``'s slug and config vars again, as a new release.

        The dynos restart on it (the manager sees a new release); the formation keeps its
        quantities and sizes, fitted to the old slug's process types as a deploy would.
        Raises UserError when ``target`` has no code (an app's "Initial release").
        """
        if target.slug_id is None:
            raise UserError(
                f"Release v{target.version} has no code to roll back to: choose a release "
                "made by a deploy (see 'releases')."
            )
        description = f"Rollback to v{target.version}"

        def roll_back(db: Database) -> Release:
            check_no_pending(db, app)
            return new_release(
                db,
                app,
                description,
                Trigger.ROLLBACK,
                slug_id=target.slug_id,
                processes=target.processes,
                config=target.config,
            )

        release = await self._store.transaction(roll_back)
        announce_release(self._services, app, description, release)
        return release

    # -- config vars ---------------------------------------------------------------------------

    async def config(self, app: App) -> dict[str, str]:
        release = await self.current(app)
        return dict(release.config) if release else {}

    async def update_config(self, app: App, changes: Mapping[str, object]) -> dict[str, str]:
        """Set (string value) and unset (None) config vars in one new release."""
        for key, value in changes.items():
            if value is not None and not isinstance(value, str):
                raise UserError(f"Config var {key} must be a string or null, not {value!r}.")
            check_config_var(key, value)
        made = await self._store.transaction(lambda db: release_config(db, app, changes))
        if made.release is not None:
            announce_release(self._services, app, made.description, made.release)
        return made.config


def release_config(
    db: Database,
    app: App,
    changes: Mapping[str, object],
    description: str | None = None,
    trigger: Trigger = Trigger.CONFIG,
) -> ConfigRelease:
    """A new release of the live one's code with config ``changes`` (a string sets a var,
    None unsets it); inside the caller's transaction, in the store's thread.

    Without a ``description`` it says which vars were set and removed, and no release is
    made when the config stays the same. With one (an add-on's ``Attach REDIS``) the release
    is made whatever changed: the user asked for that action, and the history shows it.
    ``trigger`` decides whether its release phase runs (not for an add-on's detach).
    Conflict while another release of the app is pending.
    """
    current = db.current_release(app.id)
    assert current is not None  # every app has its "Initial release"
    config = dict(current.config)
    set_keys = [k for k, v in changes.items() if v is not None]
    unset_keys = [k for k, v in changes.items() if v is None and k in config]
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = str(value)
    if description is None:
        if config == current.config:
            return ConfigRelease(config, None, "")
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if unset_keys:
            parts.append(f"Remove {', '.join(unset_keys)} config vars")
        description = " and ".join(parts)
    check_no_pending(db, app)
    release = new_release(
        db,
        app,
        description,
        trigger,
        slug_id=current.slug_id,
        processes=current.processes,
        config=config,
    )
    return ConfigRelease(config, release, description)


def new_release(
    db: Database,
    app: App,
    description: str,
    trigger: Trigger,
    *,
    slug_id: str | None,
    processes: Mapping[str, str],
    config: Mapping[str, str],
) -> Release:
    """The app's next release (inside the caller's transaction): pending when its release
    phase is to run (announce_release starts it), else live at once, the formation fitted
    to its process types."""
    status = initial_status(processes, slug_id, trigger)
    pending = status is ReleaseStatus.PENDING
    release = db.create_release(
        app.id,
        description,
        slug_id=slug_id,
        processes=processes,
        config=config,
        status=status,
        output_key=new_output_key() if pending else None,
    )
    if not pending:
        sync_formation(db, app, release.processes)
    return release


def check_no_pending(db: Database, app: App) -> None:
    """Conflict while a release phase of ``app`` runs: a release made meanwhile would build
    on a release that may never go live, or overtake it."""
    for pending in db.pending_releases(app.id):
        raise Conflict(
            f"The release command of v{pending.version} is still running: wait for it to "
            f"end (dynos releases:output v{pending.version} -a {app.name}), then try again."
        )
