"""The ``acm`` table: one row per app with automatic certificates on (core/acm.py's
``AcmRecord``). A mixin of ``Database``, so that its queries run in the store's thread like
every other; the certificates themselves are files (platform/acm.py)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from dynos.core.acm import AcmRecord, AcmStatus, check_status_change
from dynos.store.rows import time_from_text, time_text


def _time(text: str | None) -> datetime | None:
    return None if text is None else time_from_text(text)


def acm_from_row(row: sqlite3.Row) -> AcmRecord:
    return AcmRecord(
        row["app_id"],
        AcmStatus(row["status"]),
        row["reason"],
        row["failures"],
        _time(row["retry_at"]),
        tuple(json.loads(row["hosts"])),
        _time(row["not_before"]),
        _time(row["not_after"]),
        time_from_text(row["updated_at"]),
    )


class AcmTable:
    """The ``acm`` table's queries (``Database`` has them)."""

    _conn: sqlite3.Connection

    def acm_record(self, app_id: str) -> AcmRecord | None:
        row = self._conn.execute("SELECT * FROM acm WHERE app_id = ?", (app_id,)).fetchone()
        return None if row is None else acm_from_row(row)

    def acm_records(self) -> list[AcmRecord]:
        return [acm_from_row(row) for row in self._conn.execute("SELECT * FROM acm")]

    def save_acm(self, record: AcmRecord) -> bool:
        """Write ``record`` (a first one turns ACM on); False, and nothing written, when ACM
        was turned off meanwhile (an attempt that ends after ``certs:auto:disable``)."""
        current = self.acm_record(record.app_id)
        if current is not None:
            check_status_change(current.status, record.status)
        values = (
            str(record.status),
            record.reason,
            record.failures,
            None if record.retry_at is None else time_text(record.retry_at),
            json.dumps(list(record.hosts)),
            None if record.not_before is None else time_text(record.not_before),
            None if record.not_after is None else time_text(record.not_after),
            time_text(record.updated_at),
            record.app_id,
        )
        cursor = self._conn.execute(
            "UPDATE acm SET status = ?, reason = ?, failures = ?, retry_at = ?, hosts = ?,"
            " not_before = ?, not_after = ?, updated_at = ? WHERE app_id = ?",
            values,
        )
        return cursor.rowcount == 1

    def enable_acm(self, record: AcmRecord) -> AcmRecord:
        """Turn ACM on with ``record``, or leave the app's record as it is if it is on."""
        current = self.acm_record(record.app_id)
        if current is not None:
            return current
        self._conn.execute(
            "INSERT INTO acm (app_id, status, failures, hosts, updated_at)"
            " VALUES (?, ?, 0, '[]', ?)",
            (record.app_id, str(record.status), time_text(record.updated_at)),
        )
        return record

    def disable_acm(self, app_id: str) -> bool:
        """Turn ACM off; False if it was off."""
        cursor = self._conn.execute("DELETE FROM acm WHERE app_id = ?", (app_id,))
        return cursor.rowcount == 1
