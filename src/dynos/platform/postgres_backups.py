"""pg:backups: ``pg_dump`` custom-format files of a Postgres add-on's database.

Each is made as the add-on's own role (it sees its own data and nothing else) and kept as
``<cluster>/backups/<add-on>/b001.dump``, 0600 in a 0700 directory, the server's alone; it is
written beside its final name and renamed once pg_dump succeeded, so that a listed backup is
always whole. A restore runs ``pg_restore --clean --if-exists --no-owner --no-acl
--single-transaction`` as that role: what the backup holds is dropped and made again, owned by
the role, and on an error nothing changes. Backups go with their add-on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dynos.core import postgres_plans as plans
from dynos.errors import DynosError, NotFound, PlatformError
from dynos.platform.postgres_server import Cluster, run
from dynos.store.models import Addon


@dataclass(frozen=True)
class Backup:
    id: str  # "b001"
    addon: Addon
    size: int
    created_at: datetime
    path: Path


class Backups:
    """The backups of every Postgres add-on of one cluster."""

    def __init__(self, cluster: Cluster, ensure_running: Callable[[], Awaitable[None]]) -> None:
        self.cluster = cluster
        self._ensure_running = ensure_running

    def list_of(self, addon: Addon) -> list[Backup]:
        """The add-on's backups, oldest first."""
        found = []
        for path in self._backup_dir(addon).glob(f"{plans.BACKUP_PREFIX}*.dump"):
            with contextlib.suppress(DynosError, OSError):
                number = plans.backup_number(path.stem)
                info = path.stat()
                created = datetime.fromtimestamp(info.st_mtime, UTC)
                backup = Backup(plans.backup_id(number), addon, info.st_size, created, path)
                found.append((number, backup))
        return [backup for _, backup in sorted(found, key=lambda pair: pair[0])]

    def get(self, addon: Addon, backup_id: str | None) -> Backup:
        """One backup by id (``b001``), or the latest when None; NotFound otherwise."""
        backups = self.list_of(addon)
        if backup_id is None:
            if backups:
                return backups[-1]
        else:
            wanted = plans.backup_id(plans.backup_number(backup_id))
            for backup in backups:
                if backup.id == wanted:
                    return backup
        raise NotFound(
            f"No backup {backup_id or ''} of {addon.name}: capture one first "
            "(dynos pg:backups:capture)."
            if backup_id is None
            else f"No backup {backup_id} of {addon.name}: run 'dynos pg:backups' to list them."
        )

    async def capture(self, addon: Addon) -> Backup:
        """pg_dump the database, as its role, in custom format."""
        await self._ensure_running()
        directory = self._backup_dir(addon)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = self.list_of(addon)
        number = plans.backup_number(existing[-1].id) + 1 if existing else 1
        path = directory / f"{plans.backup_id(number)}.dump"
        partial = path.with_suffix(".partial")
        argv = [self.cluster.program("pg_dump"), "-Fc", "-f", str(partial)]
        code, _, err = await self._client(addon, argv)
        if code != 0:
            partial.unlink(missing_ok=True)
            raise PlatformError(f"pg_dump of {addon.name} failed: {err.strip()[-500:]}")
        partial.chmod(0o600)
        partial.rename(path)
        return self.get(addon, plans.backup_id(number))

    async def restore(self, addon: Addon, backup: Backup) -> None:
        """Replace the database's contents with ``backup``'s (objects the backup does not
        have stay; those it has are dropped and made again), as the add-on's role."""
        await self._ensure_running()
        argv = [self.cluster.program("pg_restore"), "--clean", "--if-exists", "--no-owner"]
        argv += ["--no-acl", "--exit-on-error", "--single-transaction", str(backup.path)]
        code, _, err = await self._client(addon, argv)
        if code != 0:
            raise PlatformError(
                f"Restoring {backup.id} into {addon.name} failed, nothing was changed: "
                f"{err.strip()[-500:]}"
            )

    async def _client(self, addon: Addon, argv: list[str]) -> tuple[int, str, str]:
        """Run pg_dump or pg_restore against the add-on's database as its role."""
        name = plans.database_name(addon.name)
        dsn = self.cluster.dsn(name, name, addon.port)
        return await run([*argv, "-d", dsn], {"PGPASSWORD": addon.password})

    def _backup_dir(self, addon: Addon) -> Path:
        return self.cluster.backups / addon.name

    def delete_all(self, addon: Addon) -> None:
        directory = self._backup_dir(addon)
        for path in directory.glob("*.dump"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
