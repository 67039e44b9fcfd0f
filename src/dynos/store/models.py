"""What the store holds, as plain frozen records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

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
class AppState:
    """One app's whole desired state, read at once: what the manager reconciles towards."""

    app: App
    release: Release | None  # the live one: the newest that succeeded
    formation: tuple[Formation, ...]  # web first, then by type
    settings: Mapping[str, object]
