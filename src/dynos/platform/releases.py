"""Releases: deploys, rollbacks and config vars, each of which makes a new release.

A release is immutable (a slug, the Procfile's process types, the config vars); every change
to code or config makes a new one, which the manager then restarts the dynos on. A
read-modify-write (a new release from the current one's config) is one function run in the
store's thread inside one transaction (:func:`release_config`), so two requests at once
cannot interleave inside it; logging and waking the manager happen back on the event loop,
once the transaction has committed (:func:`~dynos.platform.context.announce_release`).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dynos.core.sizes import DEFAULT_SIZE, DynoSize
from dynos.errors import UserError
from dynos.platform.build import Builder, Slug
from dynos.platform.context import Services, announce_release
from dynos.platform.slug_archive import UnpackLimits, describe_size, slug_size, unpack_slug
from dynos.store.database import Database
from dynos.store.models import App, Release

CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ConfigRelease:
    """What :func:`release_config` made: the config vars now, and the release that holds
    them (None when nothing changed and no release was asked for by name)."""

    config: dict[str, str]
    release: Release | None
    description: str


class Releases:
    def __init__(
        self, services: Services, builder: Builder, slugs_dir: Path, unpack_limits: UnpackLimits
    ) -> None:
        self._services = services
        self._store = services.store
        self.builder = builder
        self.slugs_dir = slugs_dir
        self.unpack_limits = unpack_limits

    # -- reading -------------------------------------------------------------------------------

    async def list(self, app: App) -> list[Release]:
        return await self._store.list_releases(app.id)

    async def get(self, app: App, id_or_version: str) -> Release:
        return await self._store.get_release(app.id, id_or_version)

    async def current(self, app: App) -> Release | None:
        return await self._store.current_release(app.id)

    # -- deploys -------------------------------------------------------------------------------

    async def unpack(self, upload: Path) -> Slug:
        """The slug in an uploaded ``.tar.gz``, unpacked within the limits (UserError past
        them). Off the event loop: a large tarball takes a while."""
        return await asyncio.to_thread(unpack_slug, upload, self.slugs_dir, self.unpack_limits)

    async def deploy(self, app: App, slug: Slug) -> AsyncIterator[str | Release]:
        """Build ``slug`` and release it: yields build output lines, then the new Release.

        A failed build raises BuildFailed after its output; the slug is removed and the
        app keeps its current release and formation. A build gets the limits of the app's
        largest dyno size (:meth:`build_size`).
        """
        released = False
        try:
            if slug.needs_build:
                size, config = await self.build_size(app), await self.config(app)
                async for line in self.builder.build(app.id, slug, size, config):
                    yield line
            yield f"-----> Discovering process types: {', '.join(slug.processes)}"
            size_bytes = await asyncio.to_thread(slug_size, slug.path)
            yield f"-----> Slug size: {describe_size(size_bytes)}"
            release = await self._release_slug(app, slug)
            released = True
            yield release
        finally:
            if not released:
                shutil.rmtree(slug.path, ignore_errors=True)

    async def build_size(self, app: App) -> DynoSize:
        """The largest size in the app's formation (whatever its quantity: a type scaled to 0
        still runs at its size when scaled up), the default size when it has none yet."""
        sizes = [entry.size for entry in await self._store.formation(app.id)]
        return max(sizes, key=lambda size: size.memory_mb, default=DEFAULT_SIZE)

    async def _release_slug(self, app: App, slug: Slug) -> Release:
        description = f"Deploy {slug.id[:8]}"

        def release_it(db: Database) -> Release:
            current = db.current_release(app.id)
            release = db.create_release(
                app.id,
                description,
                slug_id=slug.id,
                processes=slug.processes,
                config=current.config if current else {},
            )
            _sync_formation(db, app, slug.processes)
            return release

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
            release = db.create_release(
                app.id,
                description,
                slug_id=target.slug_id,
                processes=target.processes,
                config=target.config,
            )
            _sync_formation(db, app, target.processes)
            return release

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
            if not CONFIG_KEY.fullmatch(key):
                raise UserError(
                    f"Invalid config var name {key!r}: use letters, digits and '_', "
                    "not starting with a digit."
                )
            if value is not None and not isinstance(value, str):
                raise UserError(f"Config var {key} must be a string or null, not {value!r}.")
        made = await self._store.transaction(lambda db: release_config(db, app, changes))
        if made.release is not None:
            announce_release(self._services, app, made.description, made.release)
        return made.config


def release_config(
    db: Database,
    app: App,
    changes: Mapping[str, object],
    description: str | None = None,
) -> ConfigRelease:
    """A new release of the current one's code with config ``changes`` (a string sets a var,
    None unsets it); inside the caller's transaction, in the store's thread.

    Without a ``description`` it says which vars were set and removed, and no release is
    made when the config stays the same. With one (an add-on's ``Attach REDIS``) the release
    is made whatever changed: the user asked for that action, and the history shows it.
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
    release = db.create_release(
        app.id,
        description,
        slug_id=current.slug_id,
        processes=current.processes,
        config=config,
    )
    return ConfigRelease(config, release, description)


def _sync_formation(db: Database, app: App, processes: Mapping[str, str]) -> None:
    """Fit the formation to a release's process types (inside the caller's transaction).

    Types the release lacks are dropped, new ones start at 0 dynos (``web`` at 1 on the
    first deploy); the others keep their quantity and size.
    """
    existing = {f.type: f for f in db.formation(app.id)}
    for type_ in existing.keys() - processes.keys():
        db.delete_formation(app.id, type_)
    first_deploy = not existing
    for type_ in processes.keys() - existing.keys():
        quantity = 1 if first_deploy and type_ == "web" else 0
        db.set_formation(app.id, type_, quantity, DEFAULT_SIZE)
