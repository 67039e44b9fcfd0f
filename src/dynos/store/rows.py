"""How the store's records are kept in SQLite rows, both ways: timestamps as UTC text to the
second, JSON for mappings, a size by its name. database.py writes and queries; the records
(models.py) are built here from the rows it reads.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from dynos.core.release_phase import ReleaseStatus
from dynos.core.sizes import find_size
from dynos.store.models import Addon, App, Formation, Release

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> datetime:
    """The time a record is stamped with: to the second, as it is stored."""
    return datetime.now(UTC).replace(microsecond=0)


def time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def time_from_text(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def app_from_row(row: sqlite3.Row) -> App:
    return App(
        row["id"], row["name"], time_from_text(row["created_at"]), time_from_text(row["updated_at"])
    )


def release_from_row(row: sqlite3.Row) -> Release:
    return Release(
        row["id"],
        row["app_id"],
        row["version"],
        row["description"],
        row["slug_id"],
        json.loads(row["processes"]),
        json.loads(row["config"]),
        time_from_text(row["created_at"]),
        ReleaseStatus(row["status"]),
        row["output_key"],
        time_from_text(row["updated_at"]) if row["updated_at"] else None,
    )


def formation_from_row(row: sqlite3.Row) -> Formation:
    return Formation(
        row["id"],
        row["app_id"],
        row["type"],
        row["quantity"],
        find_size(row["size"]),
        time_from_text(row["created_at"]),
        time_from_text(row["updated_at"]),
    )


def addon_from_row(row: sqlite3.Row) -> Addon:
    return Addon(
        row["id"],
        row["app_id"],
        row["name"],
        row["service"],
        row["plan"],
        row["config_var"],
        row["port"],
        row["password"],
        time_from_text(row["created_at"]),
        time_from_text(row["updated_at"]),
    )
