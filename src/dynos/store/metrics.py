"""The ``metric_periods`` and ``metric_events`` tables (core/metrics.py's periods, stored as
JSON sums; schema migration 10). A mixin of ``Database``, so that its queries run in the
store's thread."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from dynos.core.metric_events import MetricEvent
from dynos.core.metrics import (
    KEEP_MINUTES,
    KEEP_TEN_MINUTES,
    MINUTE,
    TEN_MINUTES,
    Period,
    rollup,
)


class MetricsTables:
    """The metrics' queries (``Database`` has them)."""

    _conn: sqlite3.Connection

    def add_periods(self, periods: Iterable[tuple[str, str, int, Period]]) -> None:
        """Add one-minute periods (app id, type, start, period) to what is stored for their
        minute (a server that stopped and started again within a minute wrote it twice)."""
        for app_id, type_, at, period in periods:
            key = (app_id, type_, MINUTE, at)
            row = self._conn.execute(
                "SELECT data FROM metric_periods WHERE app_id = ? AND type = ? AND step = ?"
                " AND at = ?",
                key,
            ).fetchone()
            if row is not None:
                stored = Period.from_json(json.loads(row["data"]))
                stored.add(period)
                period = stored
            self._conn.execute(
                "INSERT OR REPLACE INTO metric_periods (app_id, type, step, at, data)"
                " VALUES (?, ?, ?, ?, ?)",
                (*key, json.dumps(period.to_json())),
            )

    def roll_up(self, now: float) -> int:
        """Make the ten-minute periods that are over by ``now`` and not made yet from their
        minutes, and drop what is older than it is kept; how many were made."""
        last_open = int(now) // TEN_MINUTES * TEN_MINUTES
        rows = self._conn.execute(
            "SELECT m.app_id, m.type, m.at, m.data FROM metric_periods m"
            " WHERE m.step = ? AND m.at < ? AND NOT EXISTS (SELECT 1 FROM metric_periods t"
            "  WHERE t.app_id = m.app_id AND t.type = m.type AND t.step = ?"
            "  AND t.at = m.at / ? * ?)",
            (MINUTE, last_open, TEN_MINUTES, TEN_MINUTES, TEN_MINUTES),
        ).fetchall()
        groups: dict[tuple[str, str], list[tuple[int, Period]]] = {}
        for row in rows:
            period = Period.from_json(json.loads(row["data"]))
            groups.setdefault((row["app_id"], row["type"]), []).append((row["at"], period))
        made = 0
        for (app_id, type_), minutes in groups.items():
            starts = {at // TEN_MINUTES * TEN_MINUTES for at, _ in minutes}
            # A ten-minute period is made from all its minutes, those rolled up before too.
            for start in starts:
                every = self.periods(app_id, type_, MINUTE, start, start + TEN_MINUTES)
                for at, period in rollup(every.items()).items():
                    self._conn.execute(
                        "INSERT OR REPLACE INTO metric_periods (app_id, type, step, at, data)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (app_id, type_, TEN_MINUTES, at, json.dumps(period.to_json())),
                    )
                    made += 1
        self._conn.execute(
            "DELETE FROM metric_periods WHERE (step = ? AND at < ?) OR (step = ? AND at < ?)",
            (MINUTE, now - KEEP_MINUTES, TEN_MINUTES, now - KEEP_TEN_MINUTES),
        )
        self._conn.execute("DELETE FROM metric_events WHERE at < ?", (now - KEEP_TEN_MINUTES,))
        return made

    def periods(
        self, app_id: str, type_: str, step: int, since: int, until: int
    ) -> dict[int, Period]:
        """The stored periods of ``step`` seconds starting in ``[since, until)``, by start."""
        rows = self._conn.execute(
            "SELECT at, data FROM metric_periods WHERE app_id = ? AND type = ? AND step = ?"
            " AND at >= ? AND at < ? ORDER BY at",
            (app_id, type_, step, since, until),
        )
        return {row["at"]: Period.from_json(json.loads(row["data"])) for row in rows}

    def add_events(self, events: Iterable[tuple[str, MetricEvent]]) -> None:
        self._conn.executemany(
            "INSERT INTO metric_events (app_id, at, kind, message) VALUES (?, ?, ?, ?)",
            [(app_id, e.at, e.kind, e.message) for app_id, e in events],
        )

    def metric_events(self, app_id: str, since: float) -> list[MetricEvent]:
        rows = self._conn.execute(
            "SELECT at, kind, message FROM metric_events WHERE app_id = ? AND at >= ?"
            " ORDER BY at, id",
            (app_id, since),
        )
        return [MetricEvent(row["at"], row["kind"], row["message"]) for row in rows]
