"""The certificates the router serves: the platform CA's, one per host, and apps' own.

On start (``start``) the server makes its CA if it has none (platform/tls_files.py), issues
a certificate for ``git.<domain>`` and for each app's host ``APP.<domain>`` (one per host:
clients refuse ``*.localhost``; a domain of two labels or more gets ``*.<domain>`` too, the
certificate for hosts nobody named yet), and writes every app's own certificate from the
store to ``<home>/tls/own/``. Every change is handed to ``on_change`` (the router and its
processes) as the list of ``ServedCertificate``s: names and the files to load.

Apps' own certificates (``dynos certs:add``, the API's sni-endpoints) go through
``install``: checked (``core.certificates.check_installable``: the key matches, it is valid
now, it covers one of the app's hostnames at least), stored with its key, then served. ACME
certificates come in the same way with ``source=CertificateSource.ACM``.

An app's certificate is served only for the app's own hostnames that it covers, each host
given to one certificate by ``core.certificates.assign`` (ACM's, else the one the domain
chose with ``pin``, else the newest that names it): a certificate that names another app's
host, or a wildcard, never answers for that host. ``serving`` says which serves each host
(the API's domain ``sni_endpoint`` and sni-endpoint ``domains``).

Other parts call ``issue_hosts`` for extra host names (custom domains) and ``app_created`` /
``app_renamed`` / ``app_destroyed`` as apps change.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from dynos.core.certificates import (
    AppCertificate,
    CertificateFacts,
    CertificateSource,
    ServedCertificate,
    app_host,
    assign,
    check_installable,
    covers,
    git_host,
    valid_hostname,
    wildcard_useful,
)
from dynos.errors import PlatformError, UserError
from dynos.platform import tls_files
from dynos.store.database import Database
from dynos.store.models import App, SniEndpoint
from dynos.store.store import Store

log = logging.getLogger("dynos.certificates")

# Heroku names an SNI endpoint after a dinosaur and a number.
_NAMES = ("stegosaurus", "triceratops", "brachiosaurus", "velociraptor", "ankylosaurus")


class Certificates:
    """The server's certificate keeper (one per server, made by server.py)."""

    def __init__(
        self,
        directory: Path,
        domain: str,
        store: Store,
        *,
        on_change: Callable[[list[ServedCertificate]], None] | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.directory = directory
        self.domain = domain
        self.store = store
        self.on_change = on_change
        self.clock = clock
        self._authority: tls_files.Authority | None = None
        self._issued: dict[str, ServedCertificate] = {}  # first host -> its certificate
        self._own: dict[str, SniEndpoint] = {}  # endpoint id -> its record (files by id)
        self._apps: dict[str, App] = {}  # app id -> the app (its hostname follows its name)
        self._custom: dict[str, tuple[str, ...]] = {}  # app id -> its custom domains
        self._pins: dict[str, dict[str, str]] = {}  # app id -> hostname -> endpoint id
        self._facts: dict[tuple[str, str], CertificateFacts] = {}

    @property
    def ca_path(self) -> Path:
        """The CA certificate clients trust (``curl --cacert``, ``SSL_CERT_FILE``)."""
        return self.directory / "ca.pem"

    @property
    def authority(self) -> tls_files.Authority:
        if self._authority is None:
            raise RuntimeError("the certificates are not started")
        return self._authority

    @property
    def served(self) -> list[ServedCertificate]:
        """The platform's certificates, then each app's own for the hosts it serves."""
        own: list[ServedCertificate] = []
        for app_id in sorted({endpoint.app_id for endpoint in self._own.values()}):
            hosts: dict[str, list[str]] = {}
            for host, endpoint_id in self._assignment(app_id).items():
                hosts.setdefault(endpoint_id, []).append(host)
            for endpoint_id, names in hosts.items():
                chain, key = self._own_paths(endpoint_id)
                own.append(ServedCertificate(tuple(names), str(chain), str(key), own=True))
        return [*self._issued.values(), *own]

    async def start(self) -> None:
        """Make the CA (first start), issue the platform's certificates, load apps' own."""
        try:
            self._authority = tls_files.ensure_ca(self.directory, self.clock())
            for sub in ("issued", "own"):
                (self.directory / sub).mkdir(mode=0o700, exist_ok=True)
            default = [git_host(self.domain)]
            if wildcard_useful(self.domain):
                default += [f"*.{self.domain}", self.domain]
            self._issue(default)
            for app in await self.store.list_apps():
                self._apps[app.id] = app
                self._issue([app_host(app.name, self.domain)])
            self._pins = await self.store.call(Database.certificate_pins)
            for endpoint in await self.store.call(Database.list_sni_endpoints):
                key = await self.store.call(Database.sni_key, endpoint.id)
                self._write_own(endpoint, key)
        except OSError as exc:
            raise PlatformError(
                f"Cannot write the TLS certificates in {self.directory}: {exc}"
            ) from exc
        self._changed()

    async def keep_fresh(self, every: float = 12 * 3600) -> None:
        """Issue again, every ``every`` seconds, the platform's certificates near their end
        (a server that runs for more than a year). Runs until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                self.refresh()
            except OSError as exc:
                log.error("cannot renew the TLS certificates in %s: %s", self.directory, exc)

    def refresh(self) -> None:
        """Issue again the platform's certificates within RENEW_BEFORE of their end."""
        for cert in list(self._issued.values()):
            self._issue(list(cert.names))
        self._changed()

    # ---- the platform's own certificates -------------------------------------------------

    def issue_hosts(self, hosts: Sequence[str]) -> None:
        """Certificates for extra host names (custom domains), one per host, from the CA."""
        for host in hosts:
            if not valid_hostname(host):
                raise ValueError(f"not a host name: {host!r}")
            self._issue([host])
        self._changed()

    def forget_hosts(self, hosts: Sequence[str]) -> None:
        for host in hosts:
            self._forget(host)
        self._changed()

    def app_created(self, app: App) -> None:
        self._apps[app.id] = app
        self.issue_hosts([app_host(app.name, self.domain)])

    def app_renamed(self, old: str, new: App) -> None:
        self._apps[new.id] = new
        self._forget(app_host(old, self.domain))
        self.issue_hosts([app_host(new.name, self.domain)])

    def app_destroyed(self, app: App) -> None:
        self._forget(app_host(app.name, self.domain))
        # Its own certificates' rows went with the app (ON DELETE CASCADE): their files go.
        for endpoint_id in [i for i, e in self._own.items() if e.app_id == app.id]:
            self._drop_own(endpoint_id)
        for table in (self._apps, self._custom, self._pins):
            table.pop(app.id, None)
        self._changed()

    def _issue(self, hosts: list[str]) -> None:
        first = hosts[0]
        stem = first.replace("*", "_wildcard")
        chain = self.directory / "issued" / f"{stem}.pem"
        key = self.directory / "issued" / f"{stem}.key"
        if tls_files.needs_issuing(chain, self.authority, self.clock()) or not key.exists():
            chain_pem, key_pem = tls_files.issue(self.authority, hosts, self.clock())
            tls_files.write_private(key, key_pem)
            tls_files.write_private(chain, chain_pem, 0o600)
        self._issued[first] = ServedCertificate(tuple(hosts), str(chain), str(key), own=False)

    def _forget(self, host: str) -> None:
        if self._issued.pop(host, None) is None:
            return
        for suffix in (".pem", ".key"):
            (self.directory / "issued" / f"{host}{suffix}").unlink(missing_ok=True)

    # ---- apps' own certificates ----------------------------------------------------------

    def app_hosts(self, app: App) -> list[str]:
        """The app's hostnames: its own, then its custom domains."""
        return [app_host(app.name, self.domain), *self._custom.get(app.id, ())]

    def set_custom_domains(self, app: App, hosts: Sequence[str]) -> None:
        """The custom domains of ``app`` (the domains use-case says them): certificates are
        issued for them, and the app's own certificates serve those they cover."""
        old = set(self._custom.get(app.id, ()))
        self._apps[app.id] = app
        self._custom[app.id] = tuple(hosts)
        # A domain removed took its choice of certificate with it (the store's row too).
        kept = set(self.app_hosts(app))
        pins = self._pins.get(app.id, {})
        self._pins[app.id] = {host: e for host, e in pins.items() if host in kept}
        for host in old - set(hosts):
            self._forget(host)
        self.issue_hosts([h for h in hosts if h not in old])

    def serving(self, app: App) -> dict[str, SniEndpoint]:
        """Which of the app's certificates serves each of its hostnames (a host left out:
        the platform's)."""
        return {host: self._own[e] for host, e in self._assignment(app.id).items()}

    def _assignment(self, app_id: str) -> dict[str, str]:
        app = self._apps.get(app_id)
        if app is None:
            return {}
        certificates = [
            AppCertificate(
                e.id, self.facts(e).names, e.source == CertificateSource.ACM, e.updated_at
            )
            for e in self._own.values()
            if e.app_id == app_id
        ]
        return assign(self.app_hosts(app), certificates, self._pins.get(app_id, {}))

    async def choice(self, app: App, hostname: str, wanted: str | None) -> SniEndpoint | None:
        """The certificate ``wanted`` (a name or id; None: no choice) that the app's domain
        ``hostname`` may choose. NotFound: the app has no such certificate; UserError: it
        does not cover the domain, or ACM chooses the app's certificates."""
        if wanted is None:
            return None
        endpoint = await self.get(app, wanted)
        names = self.facts(endpoint).names
        if not covers(names, hostname):
            raise UserError(
                f"The certificate {endpoint.name} does not cover {hostname} (it names "
                f"{', '.join(names) or 'no DNS name'}): choose one that does (see certs), or "
                "add one (certs:add)."
            )
        acm = [
            e
            for e in self._own.values()
            if e.app_id == app.id and e.source == CertificateSource.ACM
        ]
        if acm and endpoint.source != CertificateSource.ACM:
            raise UserError(
                f"Automatic Certificate Management serves {app.name}'s domains: turn it off "
                f"(certs:auto:disable -a {app.name}) to choose a certificate of your own."
            )
        return endpoint

    async def pin(self, app: App, hostname: str, endpoint: SniEndpoint | None) -> None:
        """Serve ``hostname`` with ``endpoint`` (checked by ``choice``), or by the rule."""
        endpoint_id = endpoint.id if endpoint is not None else None
        await self.store.transaction(lambda db: db.pin_certificate(app.id, hostname, endpoint_id))
        pins = self._pins.setdefault(app.id, {})
        pins.pop(hostname, None)
        if endpoint_id is not None:
            pins[hostname] = endpoint_id
        self._changed()

    async def install(
        self,
        app: App,
        chain_pem: str,
        key_pem: str,
        *,
        source: CertificateSource = CertificateSource.OWN,
        replace: SniEndpoint | None = None,
    ) -> SniEndpoint:
        """Check, store and serve an app's certificate (``replace``: in place of that one).
        UserError (422) saying what is wrong with a certificate that cannot serve the app."""
        upload = tls_files.read_upload(chain_pem, key_pem)
        self._apps.setdefault(app.id, app)
        pinned = [] if replace is None else self._pinned_to(replace)
        check_installable(upload.facts, self.clock(), self.app_hosts(app), pinned=pinned)
        chain, key = upload.chain_pem.decode(), upload.key_pem.decode()
        if replace is not None:
            endpoint = await self.store.transaction(
                lambda db: db.update_sni_endpoint(replace.id, chain, key)
            )
        else:
            name = f"{secrets.choice(_NAMES)}-{secrets.randbelow(90000) + 10000}"
            endpoint = await self.store.transaction(
                lambda db: db.create_sni_endpoint(app.id, name, source.value, chain, key)
            )
        try:
            self._write_own(endpoint, key)
        except OSError as exc:
            raise PlatformError(
                f"The certificate {endpoint.name} is stored but cannot be written to "
                f"{self.directory}: {exc.strerror}. It is served once the server can write there "
                "(at its next start)."
            ) from exc
        self._changed()
        log.info("app %s: certificate %s installed (%s)", app.name, endpoint.name, source.value)
        return endpoint

    async def remove(self, endpoint: SniEndpoint) -> None:
        await self.store.transaction(lambda db: db.delete_sni_endpoint(endpoint.id))
        self._drop_own(endpoint.id)
        self._changed()

    def _pinned_to(self, endpoint: SniEndpoint) -> list[str]:
        pins = self._pins.get(endpoint.app_id, {})
        return [host for host, chosen in pins.items() if chosen == endpoint.id]

    def _drop_own(self, endpoint_id: str) -> None:
        # Domains that chose it lost their choice (the store cascades): the rule serves them.
        endpoint = self._own.pop(endpoint_id, None)
        if endpoint is not None:
            pins = self._pins.get(endpoint.app_id, {})
            for host in [h for h, chosen in pins.items() if chosen == endpoint_id]:
                del pins[host]
        for suffix in (".pem", ".key"):
            (self.directory / "own" / f"{endpoint_id}{suffix}").unlink(missing_ok=True)

    async def list(self, app: App) -> list[SniEndpoint]:
        return await self.store.call(Database.list_sni_endpoints, app.id)

    async def get(self, app: App, name_or_id: str) -> SniEndpoint:
        return await self.store.call(Database.get_sni_endpoint, app.id, name_or_id)

    def facts(self, endpoint: SniEndpoint) -> CertificateFacts:
        """What the endpoint's certificate says (kept per version: the trust check reads
        the system's CA bundle)."""
        key = (endpoint.id, endpoint.updated_at.isoformat())
        facts = self._facts.get(key)
        if facts is None:
            facts = tls_files.facts_of_pem(endpoint.certificate_chain, self.clock())
            self._facts = {k: v for k, v in self._facts.items() if k[0] != endpoint.id}
            self._facts[key] = facts
        return facts

    def _own_paths(self, endpoint_id: str) -> tuple[Path, Path]:
        own = self.directory / "own"
        return own / f"{endpoint_id}.pem", own / f"{endpoint_id}.key"

    def _write_own(self, endpoint: SniEndpoint, key: str) -> None:
        chain_path, key_path = self._own_paths(endpoint.id)
        tls_files.write_private(key_path, key.encode())
        tls_files.write_private(chain_path, endpoint.certificate_chain.encode())
        self.facts(endpoint)  # read once, now
        self._own[endpoint.id] = endpoint

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.served)
