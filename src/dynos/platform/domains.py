"""An app's domains: its own hostname, ``APP.<domain>``, and the custom ones added to it.

A custom domain is a hostname (checked by core/hostnames.py) that the router sends to the
app, as it sends ``APP.<domain>``. Adding or removing one writes the store and publishes the
routes before answering: once ``domains:add`` returns, a request with that ``Host`` reaches
the app through every router process (``manager.refresh`` waits for them). The app's own
hostname is not stored: it is made from the app's name here, so a renamed app's changes with
it. Custom domains go with their app (the store cascades).

Other parts that follow an app's names (certificates must cover each one) ask for them
(``hostnames``: the app's own and its custom domains; ``custom_hostnames``) or ``watch``
them: a watcher is told an app's custom domains now, and again after every change (added,
removed, the app renamed, or destroyed: none left).

A domain may choose which of the app's certificates serves it (Heroku's ``sni_endpoint``:
``domains:add --cert``, ``domains:update --cert``); the choice is checked and kept by
platform/certificates.py, asked through ``certificates`` (None: the server serves no HTTPS).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dynos.core.hostnames import MAX_DOMAINS_PER_APP, DomainKind, lookup_key, parse_hostname
from dynos.errors import UserError
from dynos.platform.context import Services, route_now
from dynos.store.database import Database
from dynos.store.models import App, Domain, SniEndpoint

if TYPE_CHECKING:
    from dynos.platform.certificates import Certificates

log = logging.getLogger(__name__)

# ``watcher(app, hostnames)``: the app's custom domains' hostnames, after a change. Called
# on the event loop; it must not block (start a task for slow work).
DomainsWatcher = Callable[[App, Sequence[str]], None]

# The app's own domain has no row: its id is made from the app's, the same on every call.
OWN_DOMAIN_IDS = uuid.UUID("8c1f7a52-58c4-4b0e-9d1e-0d5f0c6a1d01")


class Domains:
    def __init__(
        self,
        services: Services,
        platform_domain: str,
        certificates: Callable[[], Certificates | None] = lambda: None,
    ) -> None:
        self._services = services
        self._certificates = certificates
        self._store = services.store
        self.platform_domain = platform_domain.lower()
        self._watchers: list[DomainsWatcher] = []

    def own(self, app: App) -> Domain:
        """The app's own hostname, ``APP.<domain>`` (kind ``heroku``)."""
        return Domain(
            str(uuid.uuid5(OWN_DOMAIN_IDS, app.id)),
            app.id,
            self.own_hostname(app),
            app.created_at,
            app.updated_at,
            DomainKind.HEROKU,
        )

    def own_hostname(self, app: App) -> str:
        """Where the app answers by itself, and the DNS target of its custom domains."""
        return f"{app.name}.{self.platform_domain}"

    async def of_app(self, app: App) -> list[Domain]:
        """The app's own domain first, then its custom ones, oldest first."""
        return [self.own(app), *await self._store.list_domains(app.id)]

    async def hostnames(self, app: App) -> list[str]:
        """Every hostname the router sends to the app: its own, then its custom domains."""
        return [domain.hostname for domain in await self.of_app(app)]

    async def custom_hostnames(self, app: App) -> list[str]:
        """The app's custom domains' hostnames, oldest first."""
        return [domain.hostname for domain in await self._store.list_domains(app.id)]

    async def watch(self, watcher: DomainsWatcher) -> None:
        """Tell ``watcher`` every app's custom domains now (each app that has some), then
        each app's again whenever they change."""
        self._watchers.append(watcher)
        hostnames = await self._store.call(Database.hostnames_by_app)
        for app in await self._store.list_apps():
            if app.id in hostnames:
                self._tell(watcher, app, hostnames[app.id])

    async def app_renamed(self, app: App) -> None:
        """``app`` has a new name: its watchers hear its custom domains under it."""
        await self._announce(app)

    def app_destroyed(self, app: App) -> None:
        """``app`` is gone, its custom domains with it (the store cascades)."""
        for watcher in self._watchers:
            self._tell(watcher, app, ())

    async def _announce(self, app: App) -> None:
        if self._watchers:
            hostnames = await self.custom_hostnames(app)
            for watcher in self._watchers:
                self._tell(watcher, app, hostnames)

    @staticmethod
    def _tell(watcher: DomainsWatcher, app: App, hostnames: Sequence[str]) -> None:
        try:
            watcher(app, tuple(hostnames))
        except Exception:  # the change is committed and routed: a watcher's failure is its own
            log.exception("a watcher of %s's custom domains failed", app.name)

    async def get(self, app: App, identity: str) -> Domain:
        """The app's domain with this id or hostname (in any case); NotFound otherwise."""
        own = self.own(app)
        key = lookup_key(identity)
        if key in (own.id, own.hostname):
            return own
        return await self._store.call(Database.get_domain, app.id, key)

    async def add(self, app: App, hostname: object, certificate: object = None) -> Domain:
        """Route ``hostname`` to the app, served with the app's ``certificate`` (a name or
        id; None: by the rule). UserError for a hostname that may not be added
        (core/hostnames.py) or a certificate that cannot serve it, Conflict for a hostname
        some app has already."""
        name = parse_hostname(hostname, self.platform_domain)
        chosen = await self._choice(app, name, certificate)

        def add(db: Database) -> Domain:
            if db.count_domains(app.id) >= MAX_DOMAINS_PER_APP:
                raise UserError(
                    f"{app.name} has {MAX_DOMAINS_PER_APP} custom domains, the most an app "
                    "may have: remove one before adding another."
                )
            return db.create_domain(app.id, name)

        domain = await self._store.transaction(add)
        await route_now(self._services)
        await self._announce(app)
        if chosen is not None:
            await self._pin(app, name, chosen)
        return domain

    async def choose_certificate(self, app: App, identity: str, certificate: object) -> Domain:
        """Serve the app's domain with its ``certificate`` (a name or id), or, given None,
        with the one the rule picks (platform/certificates.py)."""
        domain = await self.get(app, identity)
        chosen = await self._choice(app, domain.hostname, certificate)
        await self._pin(app, domain.hostname, chosen)
        return domain

    async def _choice(self, app: App, hostname: str, certificate: object) -> SniEndpoint | None:
        if certificate is not None and not isinstance(certificate, str):
            raise UserError("sni_endpoint is the name or id of one of the app's certificates.")
        keeper = self._certificates()
        if keeper is None:
            if certificate is None:
                return None
            raise UserError("This server serves no HTTPS: a domain cannot choose a certificate.")
        return await keeper.choice(app, hostname, certificate)

    async def _pin(self, app: App, hostname: str, chosen: SniEndpoint | None) -> None:
        keeper = self._certificates()
        if keeper is not None:
            await keeper.pin(app, hostname, chosen)

    async def remove(self, app: App, identity: str) -> Domain:
        """Stop routing a custom domain to the app; the removed domain comes back."""
        domain = await self.get(app, identity)
        if domain.kind is DomainKind.HEROKU:
            raise UserError(
                f"{domain.hostname} is the app's own hostname: it cannot be removed (it goes "
                "with the app, or changes with its name)."
            )

        def remove(db: Database) -> Domain:
            found = db.get_domain(app.id, domain.id)  # NotFound if removed meanwhile
            db.delete_domain(found.id)
            return found

        removed = await self._store.transaction(remove)
        await route_now(self._services)
        await self._announce(app)
        return removed
