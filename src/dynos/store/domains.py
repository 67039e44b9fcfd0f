"""The store's queries of custom domains (the ``domains`` table, schema migration 5).

A mixin of :class:`~dynos.store.database.Database`, kept apart so that each file holds one
concept. A hostname is unique across apps: the table says so (``UNIQUE``), so two requests
racing for one name cannot both win, and the loser is told which app holds it.
"""

from __future__ import annotations

import sqlite3
import uuid

from dynos.errors import Conflict, NotFound
from dynos.store.connection import StateConnection
from dynos.store.models import Domain
from dynos.store.rows import now, time_from_text, time_text


def domain_from_row(row: sqlite3.Row) -> Domain:
    return Domain(
        row["id"],
        row["app_id"],
        row["hostname"],
        time_from_text(row["created_at"]),
        time_from_text(row["updated_at"]),
    )


class DomainQueries(StateConnection):
    def create_domain(self, app_id: str, hostname: str) -> Domain:
        """Add ``hostname`` (already checked: core/hostnames.py) to the app. Conflict if
        some app, this one included, has it already."""
        at = now()
        domain = Domain(str(uuid.uuid4()), app_id, hostname, at, at)
        try:
            self._conn.execute(
                "INSERT INTO domains (id, app_id, hostname, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (domain.id, app_id, hostname, time_text(at), time_text(at)),
            )
        except sqlite3.IntegrityError as exc:
            raise self._taken(app_id, hostname) from exc
        return domain

    def _taken(self, app_id: str, hostname: str) -> Conflict:
        row = self._conn.execute(
            "SELECT apps.id, apps.name FROM domains JOIN apps ON apps.id = domains.app_id"
            " WHERE domains.hostname = ?",
            (hostname,),
        ).fetchone()
        if row is None:  # not a clash of hostnames after all: let the caller see why
            return Conflict(f"The domain {hostname} could not be added: try again.")
        if row["id"] == app_id:
            return Conflict(f"The domain {hostname} is already added to this app.")
        return Conflict(
            f"The domain {hostname} is already in use by the app {row['name']}: remove it "
            f"there first (domains:remove {hostname} -a {row['name']})."
        )

    def list_domains(self, app_id: str) -> list[Domain]:
        """The app's custom domains, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM domains WHERE app_id = ? ORDER BY created_at, hostname", (app_id,)
        ).fetchall()
        return [domain_from_row(row) for row in rows]

    def count_domains(self, app_id: str) -> int:
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM domains WHERE app_id = ?", (app_id,)
        ).fetchone()
        return int(count)

    def get_domain(self, app_id: str, id_or_hostname: str) -> Domain:
        """The app's custom domain with this id or hostname (as stored); NotFound if none."""
        row = self._conn.execute(
            "SELECT * FROM domains WHERE app_id = ? AND (id = ? OR hostname = ?)",
            (app_id, id_or_hostname, id_or_hostname),
        ).fetchone()
        if row is None:
            raise NotFound(
                f"Couldn't find the domain {id_or_hostname} on this app: run 'domains' to "
                "list its domains."
            )
        return domain_from_row(row)

    def delete_domain(self, domain_id: str) -> None:
        """The domain goes, and its choice of certificate with it."""
        self._conn.execute(
            "DELETE FROM domain_certificates WHERE (app_id, hostname) IN"
            " (SELECT app_id, hostname FROM domains WHERE id = ?)",
            (domain_id,),
        )
        self._conn.execute("DELETE FROM domains WHERE id = ?", (domain_id,))

    def hostnames_by_app(self) -> dict[str, tuple[str, ...]]:
        """Every app's custom hostnames, by app id, oldest first (as ``list_domains``)."""
        hostnames: dict[str, list[str]] = {}
        query = "SELECT app_id, hostname FROM domains ORDER BY created_at, hostname"
        for row in self._conn.execute(query):
            hostnames.setdefault(row["app_id"], []).append(row["hostname"])
        return {app_id: tuple(names) for app_id, names in hostnames.items()}
