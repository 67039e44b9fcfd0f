"""What the store holds, as plain frozen records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from dynos.core.hostnames import DomainKind
from dynos.core.release_phase import ReleaseStatus
from dynos.core.sizes import DynoSize


@dataclass(frozen=True)
class App:
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Release:
    """A slug (the code), the Procfile's process types and the config vars, never changed;
    and its status, which a release phase moves once from pending (core/release_phase.py).
    The app's live release is its newest succeeded one."""

    id: str
    app_id: str
    version: int
    description: str
    slug_id: str | None
    processes: dict[str, str]
    config: dict[str, str]
    created_at: datetime
    status: ReleaseStatus = ReleaseStatus.SUCCEEDED
    output_key: str | None = None  # the secret of its release phase's output URL, if it has one
    updated_at: datetime | None = None  # when its status last changed (None: as created)


@dataclass(frozen=True)
class Formation:
    id: str
    app_id: str
    type: str
    quantity: int
    size: DynoSize  # the database keeps its name (e.g. "Standard-1X")
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Addon:
    """A managed add-on: a backing service the platform runs for one app."""

    id: str
    app_id: str
    name: str  # globally unique, e.g. "redis-solid-31337"
    service: str  # "redis"
    plan: str  # "redis:local"
    config_var: str  # what the app reads, e.g. "REDIS_URL"
    port: int  # on 127.0.0.1
    password: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Domain:
    """A hostname the router sends to an app. The store keeps the custom ones; the app's own
    (``APP.<domain>``, kind ``heroku``) is made by the platform from the app's name."""

    id: str
    app_id: str
    hostname: str  # lowercase, no trailing dot (core/hostnames.py)
    created_at: datetime
    updated_at: datetime
    kind: DomainKind = DomainKind.CUSTOM


@dataclass(frozen=True)
class AppState:
    """One app's whole desired state, read at once: what the manager reconciles towards."""

    app: App
    release: Release | None  # the live one: the newest that succeeded
    formation: tuple[Formation, ...]  # web first, then by type
    settings: Mapping[str, object]
    domains: tuple[str, ...] = ()  # its custom domains' hostnames, which route to it too
    features: frozenset[str] = frozenset()  # the names of its enabled app features


@dataclass(frozen=True)
class SniEndpoint:
    """An app's own TLS certificate (its private key is not here: ``Database.sni_key``)."""

    id: str
    app_id: str
    name: str  # e.g. "stegosaurus-31337", as Heroku names them
    source: str  # core.certificates.CertificateSource: "own" or "acm"
    certificate_chain: str  # PEM, the leaf first
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AppFeature:
    """An app's setting of one feature (core/features.py); None times: never changed."""

    app_id: str
    name: str
    enabled: bool
    created_at: datetime | None
    updated_at: datetime | None
