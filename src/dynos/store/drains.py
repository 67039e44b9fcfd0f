"""The ``log_drains`` table: each app's log drains (core/drains.py has their rules). A mixin
of ``Database``, so that its queries run in the store's thread."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from dynos.core.drains import MAX_DRAINS, drain_id
from dynos.errors import Conflict, UserError
from dynos.store.rows import now, time_from_text, time_text


@dataclass(frozen=True)
class LogDrain:
    id: str
    app_id: str
    app_name: str
    url: str
    token: str
    created_at: datetime
    updated_at: datetime


_SELECT = (
    "SELECT log_drains.*, apps.name AS app_name FROM log_drains"
    " JOIN apps ON apps.id = log_drains.app_id"
)


def _row(row: sqlite3.Row) -> LogDrain:
    return LogDrain(
        row["id"],
        row["app_id"],
        row["app_name"],
        row["url"],
        row["token"],
        time_from_text(row["created_at"]),
        time_from_text(row["updated_at"]),
    )


class LogDrainTable:
    """The ``log_drains`` table's queries (``Database`` has them)."""

    _conn: sqlite3.Connection

    def log_drains(self, app_id: str | None = None) -> list[LogDrain]:
        """The drains of ``app_id`` (of every app when None), oldest first (the order added)."""
        if app_id is None:
            rows = self._conn.execute(f"{_SELECT} ORDER BY log_drains.rowid")
        else:
            rows = self._conn.execute(
                f"{_SELECT} WHERE app_id = ? ORDER BY log_drains.rowid",
                (app_id,),
            )
        return [_row(row) for row in rows]

    def add_log_drain(self, app_id: str, url: str, token: str) -> LogDrain:
        """Record a drain; Conflict when the app has it already, UserError past the limit."""
        (count,) = self._conn.execute(
            "SELECT count(*) FROM log_drains WHERE app_id = ?", (app_id,)
        ).fetchone()
        if count >= MAX_DRAINS:
            raise UserError(
                f"This app has {count} drains, the most it may have: remove one first "
                "(drains:remove)."
            )
        stamp = time_text(now())
        id_ = drain_id(app_id, url)
        try:
            self._conn.execute(
                "INSERT INTO log_drains (id, app_id, url, token, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (id_, app_id, url, token, stamp, stamp),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"The drain {url} is already added to this app.") from exc
        (row,) = self._conn.execute(f"{_SELECT} WHERE log_drains.id = ?", (id_,))
        return _row(row)

    def delete_log_drain(self, id_: str) -> bool:
        return self._conn.execute("DELETE FROM log_drains WHERE id = ?", (id_,)).rowcount > 0
