"""The use-cases: what a user can do to an app, shared by the API and the CLI's `up`.

Each use-case validates everything first, then writes desired state to the store in one
transaction, logs it as Heroku does (``app[api]: ...``), and wakes the manager. Nothing here
starts or stops a process.
"""

from __future__ import annotations

import getpass
import random
import re
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dynos.core.app_settings import parse_setting
from dynos.core.scale import FormationEntry, ScaleChange, apply_changes, format_formation
from dynos.core.sizes import DEFAULT_SIZE, find_size
from dynos.errors import DynosError, NotFound, UserError
from dynos.logs.hub import LogHub
from dynos.logs.logline import APP
from dynos.manager.manager import DynoManager
from dynos.platform.build import Slug, build_slug
from dynos.store.models import App, Formation, Release
from dynos.store.store import Store

if TYPE_CHECKING:
    from dynos.platform.addons import Addons

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADJECTIVES = ("calm", "bold", "quiet", "brisk", "sunny", "misty", "swift", "amber", "lucky")
_NOUNS = ("river", "harbor", "meadow", "summit", "forest", "canyon", "comet", "island", "delta")


@dataclass(frozen=True)
class Account:
    id: str
    email: str


class Platform:
    def __init__(
        self,
        store: Store,
        manager: DynoManager,
        logs: LogHub,
        slugs_dir: Path,
        account: Account,
        python: str = sys.executable,
    ) -> None:
        self.store = store
        self.manager = manager
        self.logs = logs
        self.slugs_dir = slugs_dir
        self.account = account
        self.python = python  # builds use the interpreter that dynos run
        self.addons: Addons | None = None  # the managed add-ons, when server.py runs them

    def _api_log(self, app: App, message: str) -> None:
        self.logs.emit(app.name, APP, "api", f"{message} by user {self.account.email}")

    # -- apps --------------------------------------------------------------------------------

    def create_app(self, name: str | None) -> App:
        if name is None:
            name = _random_name()
        if not APP_NAME.match(name):
            raise UserError(
                f"Invalid app name {name!r}: use 3 to 30 lowercase letters, digits and dashes, "
                "starting with a letter and not ending with a dash."
            )
        with self.store.transaction():
            app = self.store.create_app(name)
            self.store.create_release(
                app.id, "Initial release", slug_id=None, processes={}, config={}
            )
        self._api_log(app, "Initial release")
        self.manager.wake()
        return app

    def rename_app(self, app: App, name: str) -> App:
        if not APP_NAME.match(name):
            raise UserError(f"Invalid app name {name!r}: use 3 to 30 lowercase letters.")
        renamed = self.store.rename_app(app.id, name)
        self.manager.wake()
        return renamed

    async def destroy_app(self, app: App) -> None:
        """Forget the app, stop its dynos (waiting for them) and remove its slugs."""
        slugs = {r.slug_id for r in self.store.list_releases(app.id) if r.slug_id}
        self.store.delete_app(app.id)
        await self.manager.wait_app_stopped(app.id)
        if self.addons is not None:  # after the dynos, which may use them until they stop
            await self.addons.app_destroyed(app.id)
        await self.manager.release_app(app.id)
        for slug_id in slugs:
            shutil.rmtree(self.slugs_dir / slug_id, ignore_errors=True)
        self.logs.forget(app.name)

    # -- deploys -----------------------------------------------------------------------------

    async def deploy(self, app: App, slug: Slug) -> AsyncIterator[str | Release]:
        """Build ``slug`` and release it: yields build output lines, then the new Release.

        A failed build raises BuildFailed after its output; the slug is removed and the
        app keeps its current release and formation.
        """
        released = False
        try:
            if slug.needs_build:
                async for line in build_slug(slug, self.python):
                    yield line
            yield f"-----> Discovering process types: {', '.join(slug.processes)}"
            release = self._release_slug(app, slug)
            released = True
            yield release
        finally:
            if not released:
                shutil.rmtree(slug.path, ignore_errors=True)

    def _release_slug(self, app: App, slug: Slug) -> Release:
        current = self.store.current_release(app.id)
        config = current.config if current else {}
        with self.store.transaction():
            release = self.store.create_release(
                app.id,
                f"Deploy {slug.id[:8]}",
                slug_id=slug.id,
                processes=slug.processes,
                config=config,
            )
            self._sync_formation(app, slug.processes)
        self._api_log(app, f"Deploy {slug.id[:8]}")
        self._api_log(app, f"Release v{release.version} created")
        self.manager.wake()
        return release

    def _sync_formation(self, app: App, processes: Mapping[str, str]) -> None:
        """Fit the formation to a release's process types (inside the caller's transaction).

        Types the release lacks are dropped, new ones start at 0 dynos (``web`` at 1 on the
        first deploy); the others keep their quantity and size.
        """
        existing = {f.type: f for f in self.store.formation(app.id)}
        for type_ in existing.keys() - processes.keys():
            self.store.delete_formation(app.id, type_)
        first_deploy = not existing
        for type_ in processes.keys() - existing.keys():
            quantity = 1 if first_deploy and type_ == "web" else 0
            self.store.set_formation(app.id, type_, quantity, DEFAULT_SIZE.name)

    def rollback(self, app: App, target: Release) -> Release:
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
        with self.store.transaction():
            release = self.store.create_release(
                app.id,
                description,
                slug_id=target.slug_id,
                processes=target.processes,
                config=target.config,
            )
            self._sync_formation(app, target.processes)
        self._api_log(app, description)
        self._api_log(app, f"Release v{release.version} created")
        self.manager.wake()
        return release

    # -- formation ---------------------------------------------------------------------------

    def scale(self, app: App, changes: list[ScaleChange]) -> list[Formation]:
        """Apply ``ps:scale`` / ``ps:type`` changes; all of them, or none when one is wrong."""
        current = {
            f.type: FormationEntry(f.type, f.quantity, find_size(f.size))
            for f in self.store.formation(app.id)
        }
        updated = apply_changes(current, changes)
        with self.store.transaction():
            for entry in updated.values():
                self.store.set_formation(app.id, entry.type, entry.quantity, entry.size.name)
        self._api_log(app, f"Scaled to {format_formation(updated.values()).replace('=', '@')}")
        self.manager.wake()
        return [f for f in self.store.formation(app.id) if f.type in updated]

    def formation_entry(self, app: App, type_: str) -> Formation:
        for entry in self.store.formation(app.id):
            if entry.type == type_:
                return entry
        raise NotFound(f"No such process type {type_!r}. Run 'dynos ps:scale' to list them.")

    # -- platform settings -------------------------------------------------------------------

    def settings(self, app: App) -> dict[str, object]:
        return self.store.app_settings(app.id)

    def update_settings(self, app: App, changes: Mapping[str, object]) -> dict[str, object]:
        """Set (a value) or unset (None) app settings; all of them, or none if one is wrong."""
        parsed = {name: parse_setting(name, value) for name, value in changes.items()}
        with self.store.transaction():
            for name, value in parsed.items():
                self.store.set_app_setting(app.id, name, value)
        described = ", ".join(
            f"{k}={v}" if v is not None else f"{k} unset" for k, v in parsed.items()
        )
        self._api_log(app, f"Settings changed: {described}")
        self.manager.wake()
        self.manager.publish_routes()  # the router's per-app timeout follows at once
        return self.store.app_settings(app.id)

    # -- config vars -------------------------------------------------------------------------

    def config(self, app: App) -> dict[str, str]:
        release = self.store.current_release(app.id)
        return dict(release.config) if release else {}

    def update_config(self, app: App, changes: Mapping[str, object]) -> dict[str, str]:
        """Set (string value) and unset (None) config vars in one new release."""
        for key, value in changes.items():
            if not CONFIG_KEY.match(key):
                raise UserError(
                    f"Invalid config var name {key!r}: use letters, digits and '_', "
                    "not starting with a digit."
                )
            if value is not None and not isinstance(value, str):
                raise UserError(f"Config var {key} must be a string or null, not {value!r}.")
        current = self.store.current_release(app.id)
        assert current is not None  # every app has its "Initial release"
        config = dict(current.config)
        set_keys = [k for k, v in changes.items() if v is not None]
        unset_keys = [k for k, v in changes.items() if v is None and k in config]
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = str(value)
        if config == current.config:
            return config
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if unset_keys:
            parts.append(f"Remove {', '.join(unset_keys)} config vars")
        description = " and ".join(parts)
        release = self.store.create_release(
            app.id,
            description,
            slug_id=current.slug_id,
            processes=current.processes,
            config=config,
        )
        self._api_log(app, description)
        self._api_log(app, f"Release v{release.version} created")
        self.manager.wake()
        return config


def _random_name() -> str:
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(1000, 9999)}"


def local_account() -> Account:
    """The one account of a single-machine dynos: the user who runs the server."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "dynos"
    return Account("00000000-0000-4000-8000-000000000001", f"{user}@localhost")


__all__ = ["Account", "DynosError", "Platform", "local_account"]
