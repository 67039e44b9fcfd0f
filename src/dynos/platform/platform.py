"""The platform: what a user can do to an app, the one door of the API into dynos.

The API (src/dynos/api) reaches the store, the manager and the backends only through here
(tests/test_architecture.py holds it to that). :class:`Platform` does the apps and their
settings itself, and hands the other concerns to a use-case object each:
``platform.releases`` (deploys, rollbacks, config vars: :mod:`dynos.platform.releases`),
``platform.dynos`` (formation, restarts, one-off dynos: :mod:`dynos.platform.dynos`),
``platform.domains`` (an app's hostnames, custom domains: :mod:`dynos.platform.domains`) and
``platform.addons`` (:mod:`dynos.platform.addons`, when the server runs them).

Each use-case validates everything first, then writes desired state to the store in one
transaction, logs it as Heroku does (``app[api]: ...``), and wakes the manager. Nothing here
starts or stops a process. The functions run in the store's thread (the closures handed to
``store.transaction``) touch only the database: logging and waking the manager happen back
on the event loop, once the transaction has committed.
"""

from __future__ import annotations

import functools
import getpass
import random
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from dynos.core.app_settings import parse_setting
from dynos.core.release_phase import RELEASE_TIMEOUT
from dynos.errors import Conflict, DynosError, UserError
from dynos.logs.hub import LogHub
from dynos.manager.manager import DynoManager
from dynos.platform.acm import Acm
from dynos.platform.addons import Addons
from dynos.platform.autoscaling import Autoscaling
from dynos.platform.build import Builder
from dynos.platform.builders import SlugBuilder
from dynos.platform.certificates import Certificates
from dynos.platform.context import Account, api_log, route_now
from dynos.platform.domains import Domains
from dynos.platform.drains import Drains
from dynos.platform.dynos import Dynos
from dynos.platform.features import Features
from dynos.platform.git_repos import GitRepos
from dynos.platform.metrics import Metrics
from dynos.platform.release_phase import ReleasePhases
from dynos.platform.releases import Releases
from dynos.platform.slug_archive import UnpackLimits
from dynos.store.database import Database
from dynos.store.models import Addon, App
from dynos.store.store import Store

# Matched with fullmatch: with match, a "$" would let a trailing newline through.
APP_NAME = re.compile(r"[a-z][a-z0-9-]{1,28}[a-z0-9]")
# A name made up for an app created without one: Heroku's adjective-noun-NNNNN pattern.
# fmt: off
_ADJECTIVES = (
    "calm", "bold", "quiet", "brisk", "sunny", "misty", "swift", "amber", "lucky", "gentle",
    "floating", "secure", "shielded", "radiant", "polar", "rocky", "serene", "stormy",
    "golden", "hidden", "mighty", "silent", "vast", "young", "frozen", "glacial",
)
_NOUNS = (
    "river", "harbor", "meadow", "summit", "forest", "canyon", "comet", "island", "delta",
    "everglades", "sierra", "ocean", "savannah", "reef", "plateau", "tundra", "glade",
    "falls", "beach", "lowlands", "mountain", "dawn", "cliffs", "springs", "brook",
)
# fmt: on
# Names of the platform's own hosts under the domain (git.<domain> is the git service).
RESERVED_NAMES = frozenset({"git"})
NAME_ATTEMPTS = 5  # made-up names tried before giving up (a clash is one in 60 million)


class Platform:
    def __init__(
        self,
        store: Store,
        manager: DynoManager,
        logs: LogHub,
        slugs_dir: Path,
        account: Account,
        python: str = sys.executable,
        *,
        builder: SlugBuilder | None = None,
        unpack_limits: UnpackLimits | None = None,
        release_timeout: float = RELEASE_TIMEOUT,
        domain: str = "localhost",
        metrics: Metrics | None = None,
    ) -> None:
        """``domain``: the platform's own (``ServerConfig.domain``); apps are ``APP.<domain>``."""
        self.store = store
        self.manager = manager
        self.logs = logs
        self.slugs_dir = slugs_dir
        self.account = account
        self.python = python  # builds use the interpreter that dynos run
        builder = builder or Builder(python, slugs_dir.parent / "builds")
        self.release_phases = ReleasePhases(
            self, slugs_dir.parent / "release-output", release_timeout
        )
        self.releases = Releases(
            self, builder, slugs_dir, unpack_limits or UnpackLimits(), self.release_phases
        )
        self.dynos = Dynos(self)
        self.domains = Domains(self, domain, lambda: self.certificates)
        self.features = Features(self)  # app features: preboot
        self.drains = Drains(self)  # log drains; their senders run once server.py syncs
        # Issue 16's metrics; server.py gives the one the manager's samples go to.
        self.metrics = metrics or Metrics(store, logs)
        # Its watches run from server.py; web types read the router's view from the metrics.
        self.autoscaling = Autoscaling(self, self.dynos, self.metrics.web_window)
        self.addons: Addons | None = None  # the managed add-ons, when server.py runs them
        self.acm: Acm | None = None  # automatic certificates, when server.py runs them
        # The router's certificates, when server.py serves HTTPS (tests may go without).
        self.certificates: Certificates | None = None
        self.git: GitRepos | None = None  # the apps' git repositories, when server.py serves them

    # -- apps ----------------------------------------------------------------------------------

    async def list_apps(self) -> list[App]:
        return await self.store.list_apps()

    async def get_app(self, name_or_id: str) -> App:
        """The app by name or id; NotFound otherwise."""
        return await self.store.get_app(name_or_id)

    async def create_app(self, name: str | None) -> App:
        """The app ``name``, or one of a made-up name when None. Raises UserError
        (Conflict for a name taken)."""
        if name is not None:
            _check_app_name(name)
        names = [name] if name is not None else [_random_name() for _ in range(NAME_ATTEMPTS)]

        def create(db: Database, name: str) -> App:
            app = db.create_app(name)
            db.create_release(app.id, "Initial release", slug_id=None, processes={}, config={})
            return app

        for index, each in enumerate(names):
            try:
                app = await self.store.transaction(functools.partial(create, name=each))
                break
            except Conflict:
                if index == len(names) - 1:
                    raise
        api_log(self, app, "Initial release")
        if self.certificates is not None:
            self.certificates.app_created(app)
        self.manager.wake()
        return app

    async def rename_app(self, app: App, name: str) -> App:
        _check_app_name(name)
        renamed = await self.store.transaction(lambda db: db.rename_app(app.id, name))
        self.metrics.forget(app.name)  # what it keeps by name; the stored periods are by id
        if self.certificates is not None:
            self.certificates.app_renamed(app.name, renamed)
            # A certificate its old hostname chose goes with that name.
            await self.certificates.pin(renamed, f"{app.name}.{self.domains.platform_domain}", None)
        await route_now(self)  # its hostname, and its custom domains, follow the new name
        await self.domains.app_renamed(renamed)
        await self.drains.sync()  # the log hub knows the app by its new name
        return renamed

    async def destroy_app(self, app: App) -> None:
        """Forget the app, stop its dynos (waiting for them), remove its slugs and its git
        repository."""

        def delete(db: Database) -> tuple[set[str], list[str], list[Addon]]:
            releases = db.list_releases(app.id)
            addons = db.list_addons(app.id)  # their records go with the app
            db.delete_app(app.id)
            return {r.slug_id for r in releases if r.slug_id}, [r.id for r in releases], addons

        slugs, release_ids, addons = await self.store.transaction(delete)
        await route_now(self)  # its hostnames (custom domains too) route nowhere from now
        self.domains.app_destroyed(app)
        await self.drains.sync()  # its drains went with it
        await self.manager.wait_app_stopped(app.id)
        if self.addons is not None:  # after the dynos, which may use them until they stop
            await self.addons.app_destroyed(app.id, addons)
        await self.manager.release_app(app.id)
        for slug_id in slugs:
            shutil.rmtree(self.slugs_dir / slug_id, ignore_errors=True)
        self.release_phases.remove_output(release_ids)
        if self.certificates is not None:
            self.certificates.app_destroyed(app)
        await self.releases.builder.forget(app.id)
        if self.git is not None:
            self.git.remove(app)
        self.logs.forget(app.name)
        self.metrics.forget(app.name)

    async def app_hostnames(self, app: App) -> list[str]:
        """Every hostname the router sends to ``app``: ``APP.<domain>``, then its custom
        domains (for certificates, which must name each)."""
        return await self.domains.hostnames(app)

    # -- platform settings -------------------------------------------------------------------

    async def settings(self, app: App) -> dict[str, object]:
        return await self.store.app_settings(app.id)

    async def update_settings(self, app: App, changes: Mapping[str, object]) -> dict[str, object]:
        """Set (a value) or unset (None) app settings; all of them, or none if one is wrong."""
        parsed = {name: parse_setting(name, value) for name, value in changes.items()}

        def update(db: Database) -> dict[str, object]:
            for name, value in parsed.items():
                db.set_app_setting(app.id, name, value)
            return db.app_settings(app.id)

        settings = await self.store.transaction(update)
        described = ", ".join(
            f"{k}={v}" if v is not None else f"{k} unset" for k, v in parsed.items()
        )
        api_log(self, app, f"Settings changed: {described}")
        await route_now(self)  # the router's per-app timeout follows at once
        return settings


def _check_app_name(name: str) -> None:
    if not APP_NAME.fullmatch(name):
        raise UserError(
            f"Invalid app name {name!r}: use 3 to 30 lowercase letters, digits and dashes, "
            "starting with a letter and not ending with a dash."
        )
    if name in RESERVED_NAMES:
        raise UserError(
            f"The name {name!r} is reserved: git.<domain> is the platform's git server. "
            "Choose another name."
        )


def _random_name() -> str:
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(10000, 99999)}"


def local_account() -> Account:
    """The one account of a single-machine dynos: the user who runs the server."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "dynos"
    return Account("00000000-0000-4000-8000-000000000001", f"{user}@localhost")


__all__ = ["Account", "DynosError", "Platform", "local_account"]
