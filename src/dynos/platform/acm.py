"""Automatic certificate management, as Heroku's ACM: ``certs:auto:enable`` and the
background task that obtains and renews each app's certificate.

An app with ACM on has a record in the store (core/acm.py: its status and the names and
dates of its certificate). ``run`` is the scheduler: it looks at every record, asks
``core.acm.due`` whether the app needs an order now (no certificate, a host it does not cover,
renewal time, a retry), has ``AcmeClient`` obtain one for the app's hosts (``APP.<domain>``
and its custom domains), and sleeps until ``next_check`` says, or until a use-case wakes it
(enable, refresh, a new domain). Orders run one at a time: a server has one ACME account.

A certificate obtained is installed as the app's ACM sni-endpoint (platform/certificates.py:
stored with its key, written 0600 under ``<home>/tls/own/``, served on the HTTPS port for its
names; a renewal replaces it in place). Its dates and names go into the record, which the API
shows as ``acm_status`` per host. A failed attempt records the ACME server's reason
and is retried later (``failing``), until enough failures in a row make it ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from dynos.core.acm import (
    AcmRecord,
    RenewalPolicy,
    domain_status,
    due,
    enabled,
    failed_attempt,
    issued,
    next_check,
    normalized_hosts,
    refreshed,
)
from dynos.core.certificates import CertificateSource
from dynos.errors import DynosError, UserError
from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
from dynos.platform.acme_client import AcmeClient
from dynos.platform.certificates import Certificates
from dynos.store.database import Database
from dynos.store.models import App, SniEndpoint
from dynos.store.rows import now as store_now
from dynos.store.store import Store

log = logging.getLogger(__name__)

CHECK_EVERY = 3600.0  # seconds: the longest the scheduler sleeps, whatever is due


@dataclass(frozen=True)
class HostStatus:
    """One of the app's hosts, as ``certs:auto`` shows it."""

    hostname: str
    acm_status: str | None
    acm_status_reason: str | None
    updated_at: datetime


@dataclass(frozen=True)
class AcmView:
    """An app's ACM: off (``record`` None), or its record and each host's status."""

    record: AcmRecord | None
    hosts: tuple[HostStatus, ...]


class Acm:
    """ACM for one server. ``certificates``: the certificates the router serves;
    ``domain``: apps are ``APP.<domain>``; ``custom_domains``: an app's other hosts (its
    custom domains, when the platform has them); ``clock``: now, in UTC (tests move it)."""

    def __init__(
        self,
        store: Store,
        logs: LogHub,
        client: AcmeClient,
        certificates: Certificates,
        domain: str,
        policy: RenewalPolicy | None = None,
        *,
        custom_domains: Callable[[App], Awaitable[list[str]]] | None = None,
        clock: Callable[[], datetime] = store_now,
    ) -> None:
        self.store = store
        self.logs = logs
        self.client = client
        self.certificates = certificates
        self.domain = domain
        self.policy = policy or RenewalPolicy()
        self.custom_domains = custom_domains
        self.clock = clock
        self._wake = asyncio.Event()

    # ---- the use-cases ----------------------------------------------------------------------

    async def enable(self, app: App) -> AcmRecord:
        record = await self.store.call(Database.enable_acm, enabled(app.id, self.clock()))
        self._wake.set()
        return record

    async def disable(self, app: App) -> None:
        """ACM off: the record and the certificate go (the app's hosts are then served with
        the platform's own certificates, or the app's own)."""
        await self.store.call(Database.disable_acm, app.id)
        for endpoint in await self._endpoints(app):
            await self.certificates.remove(endpoint)

    async def refresh(self, app: App) -> AcmRecord:
        """``certs:auto:refresh``: order again now, even after it failed."""
        record = await self.store.call(Database.acm_record, app.id)
        if record is None:
            raise UserError(
                f"Automatic Certificate Management is off for {app.name}: turn it on with "
                f"'dynos certs:auto:enable -a {app.name}'."
            )
        record = refreshed(record, self.clock())
        await self.store.call(Database.save_acm, record)
        self._wake.set()
        return record

    def hosts_changed(self) -> None:
        """An app's hosts changed (a custom domain added or removed): look again now."""
        self._wake.set()

    async def is_enabled(self, app: App) -> bool:
        return await self.record(app) is not None

    async def record(self, app: App) -> AcmRecord | None:
        """The app's ACM record; None while ACM is off."""
        return await self.store.call(Database.acm_record, app.id)

    async def view(self, app: App) -> AcmView:
        record = await self.store.call(Database.acm_record, app.id)
        stamp = record.updated_at if record else app.updated_at
        hosts = tuple(
            HostStatus(host, *domain_status(record, host), stamp) for host in await self.hosts(app)
        )
        return AcmView(record, hosts)

    async def hosts(self, app: App) -> tuple[str, ...]:
        """The names an app's certificate must cover."""
        names = [f"{app.name}.{self.domain}"]
        if self.custom_domains is not None:
            names += await self.custom_domains(app)
        return normalized_hosts(names)

    # ---- the scheduler ----------------------------------------------------------------------

    async def run(self) -> None:
        """Obtain and renew certificates until cancelled."""
        while True:
            self._wake.clear()
            try:
                soonest = await self.check()
            except Exception:  # the store failed: tried again later, the server goes on
                log.exception("ACM: checking the certificates failed")
                soonest = None
            wait = CHECK_EVERY
            if soonest is not None:
                wait = min(wait, max(0.0, (soonest - self.clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def check(self) -> datetime | None:
        """One pass: order a certificate for each app that is due; return when the next one
        is, if any."""
        records = await self.store.call(Database.acm_records)
        apps = {app.id: app for app in await self.store.list_apps()}
        soonest: datetime | None = None
        for record in records:
            app = apps.get(record.app_id)
            if app is None:
                continue
            hosts = await self.hosts(app)
            reason = due(record, hosts, self.clock(), self.policy)
            if reason is not None:
                log.info("ACM: ordering a certificate for %s (%s)", ", ".join(hosts), reason)
                record = await self._attempt(app, record, hosts)
            when = next_check(record, hosts, self.clock(), self.policy)
            if when is not None and (soonest is None or when < soonest):
                soonest = when
        return soonest

    async def _attempt(self, app: App, record: AcmRecord, hosts: tuple[str, ...]) -> AcmRecord:
        try:
            got = await self.client.obtain(hosts)
            if await self.store.call(Database.acm_record, app.id) is None:
                return record  # turned off meanwhile: the certificate is not installed
            current = await self._endpoints(app)
            await self.certificates.install(
                app,
                got.cert_pem.decode(),
                got.key_pem.decode(),
                source=CertificateSource.ACM,
                replace=current[0] if current else None,
            )
        except DynosError as exc:  # AcmeFailed: the directory's reason; or the store's
            reason = exc.message
            record = failed_attempt(record, reason, self.clock(), self.policy)
            if await self.store.call(Database.save_acm, record):
                self.logs.emit(
                    app.name,
                    PLATFORM,
                    "acm",
                    f"Certificate for {', '.join(hosts)} not issued ({record.status}): {reason}",
                )
                log.warning("ACM: %s: %s", ", ".join(hosts), reason)
            return record
        record = issued(record, got.names, got.not_before, got.not_after, self.clock())
        await self.store.call(Database.save_acm, record)
        expires = got.not_after.strftime("%Y-%m-%d %H:%M:%S UTC")
        self.logs.emit(
            app.name,
            PLATFORM,
            "acm",
            f"Certificate issued for {', '.join(got.names)}, valid until {expires}",
        )
        log.info("ACM: certificate issued for %s, valid until %s", ", ".join(got.names), expires)
        return record

    async def _endpoints(self, app: App) -> list[SniEndpoint]:
        """The app's ACM certificate (one at most), as the certificate store has it."""
        endpoints = await self.certificates.list(app)
        return [e for e in endpoints if e.source == CertificateSource.ACM]
