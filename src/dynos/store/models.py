"""What the store holds, as plain frozen records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from dynos.core.sizes import DynoSize


@dataclass(frozen=True)
class App:
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Release:
    """Immutable: a slug (the code), the Procfile's process types and the config vars."""

    id: str
    app_id: str
    version: int
    description: str
    slug_id: str | None
    processes: dict[str, str]
    config: dict[str, str]
    created_at: datetime


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
class AppState:
    """One app's whole desired state, read at once: what the manager reconciles towards."""

    app: App
    release: Release | None  # the current one
    formation: tuple[Formation, ...]  # web first, then by type
    settings: Mapping[str, object]
