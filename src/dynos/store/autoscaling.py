"""The ``autoscaling`` table: each process type's autoscaling policy, as
core/autoscaling_policy.py reads it (JSON). A mixin of ``Database``, so that its queries run
in the store's thread."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from dynos.core.autoscaling_policy import WebPolicy, WorkerPolicy, parse_policy, policy_json
from dynos.store.rows import now, time_text


@dataclass(frozen=True)
class AutoscalingRow:
    app_id: str
    type: str
    policy: WebPolicy | WorkerPolicy


def _row(row: sqlite3.Row) -> AutoscalingRow:
    policy = parse_policy(row["type"], json.loads(row["policy"]))
    return AutoscalingRow(row["app_id"], row["type"], policy)


class AutoscalingTable:
    """The ``autoscaling`` table's queries (``Database`` has them)."""

    _conn: sqlite3.Connection

    def autoscaling(self, app_id: str | None = None) -> list[AutoscalingRow]:
        """The policies of ``app_id`` (of every app when None), by app then type."""
        if app_id is None:
            rows = self._conn.execute("SELECT * FROM autoscaling ORDER BY app_id, type")
        else:
            rows = self._conn.execute(
                "SELECT * FROM autoscaling WHERE app_id = ? ORDER BY type", (app_id,)
            )
        return [_row(row) for row in rows]

    def set_autoscaling(self, app_id: str, type_: str, policy: WebPolicy | WorkerPolicy) -> None:
        self._conn.execute(
            "INSERT INTO autoscaling (app_id, type, policy, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (app_id, type) DO UPDATE"
            " SET policy = excluded.policy, updated_at = excluded.updated_at",
            (app_id, type_, json.dumps(policy_json(policy)), time_text(now())),
        )

    def delete_autoscaling(self, app_id: str, type_: str) -> bool:
        """Turn the type's autoscaling off; whether it was on."""
        cursor = self._conn.execute(
            "DELETE FROM autoscaling WHERE app_id = ? AND type = ?", (app_id, type_)
        )
        return cursor.rowcount > 0
