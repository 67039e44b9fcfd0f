"""The rows of apps' own TLS certificates (``sni_endpoints``): kept apart from database.py,
which ``Database`` builds on. The private key is read only by ``sni_key``, never with the
record, so that no answer can carry it by accident."""

from __future__ import annotations

import sqlite3
import uuid

from dynos.errors import Conflict, NotFound
from dynos.store.connection import StateConnection
from dynos.store.models import SniEndpoint
from dynos.store.rows import now, time_from_text, time_text

_COLUMNS = "id, app_id, name, source, certificate_chain, created_at, updated_at"


def _endpoint(row: sqlite3.Row) -> SniEndpoint:
    return SniEndpoint(
        row["id"],
        row["app_id"],
        row["name"],
        row["source"],
        row["certificate_chain"],
        time_from_text(row["created_at"]),
        time_from_text(row["updated_at"]),
    )


class CertificateRows(StateConnection):
    def create_sni_endpoint(
        self, app_id: str, name: str, source: str, chain: str, key: str
    ) -> SniEndpoint:
        """Record an app's certificate; Conflict when its name is taken."""
        at = now()
        endpoint = SniEndpoint(str(uuid.uuid4()), app_id, name, source, chain, at, at)
        try:
            self._conn.execute(
                f"INSERT INTO sni_endpoints ({_COLUMNS}, private_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (endpoint.id, app_id, name, source, chain, time_text(at), time_text(at), key),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"A certificate called {name} exists already.") from exc
        return endpoint

    def update_sni_endpoint(self, endpoint_id: str, chain: str, key: str) -> SniEndpoint:
        self._conn.execute(
            "UPDATE sni_endpoints SET certificate_chain = ?, private_key = ?, updated_at = ?"
            " WHERE id = ?",
            (chain, key, time_text(now()), endpoint_id),
        )
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM sni_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        if row is None:
            raise NotFound("That certificate is gone.")
        return _endpoint(row)

    def list_sni_endpoints(self, app_id: str | None = None) -> list[SniEndpoint]:
        """One app's certificates, or every app's, oldest first."""
        if app_id is None:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sni_endpoints ORDER BY created_at, name"
            ).fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sni_endpoints WHERE app_id = ? ORDER BY created_at, name",
                (app_id,),
            ).fetchall()
        return [_endpoint(row) for row in rows]

    def get_sni_endpoint(self, app_id: str, name_or_id: str) -> SniEndpoint:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM sni_endpoints WHERE app_id = ? AND (id = ? OR name = ?)",
            (app_id, name_or_id, name_or_id),
        ).fetchone()
        if row is None:
            raise NotFound(
                f"Couldn't find that SNI endpoint ({name_or_id}): list them with `dynos certs`."
            )
        return _endpoint(row)

    def sni_key(self, endpoint_id: str) -> str:
        row = self._conn.execute(
            "SELECT private_key FROM sni_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        if row is None:
            raise NotFound("That certificate is gone.")
        return str(row["private_key"])

    def delete_sni_endpoint(self, endpoint_id: str) -> None:
        self._conn.execute("DELETE FROM sni_endpoints WHERE id = ?", (endpoint_id,))

    def pin_certificate(self, app_id: str, hostname: str, endpoint_id: str | None) -> None:
        """The certificate ``hostname`` (one of the app's) chose; None: no choice."""
        self._conn.execute(
            "DELETE FROM domain_certificates WHERE app_id = ? AND hostname = ?",
            (app_id, hostname),
        )
        if endpoint_id is not None:
            self._conn.execute(
                "INSERT INTO domain_certificates (app_id, hostname, sni_endpoint_id)"
                " VALUES (?, ?, ?)",
                (app_id, hostname, endpoint_id),
            )

    def certificate_pins(self) -> dict[str, dict[str, str]]:
        """Every domain's chosen certificate: app id -> hostname -> endpoint id."""
        pins: dict[str, dict[str, str]] = {}
        query = "SELECT app_id, hostname, sni_endpoint_id FROM domain_certificates"
        for row in self._conn.execute(query):
            pins.setdefault(row["app_id"], {})[row["hostname"]] = row["sni_endpoint_id"]
        return pins
