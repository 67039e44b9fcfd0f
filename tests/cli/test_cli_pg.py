"""``pg:*`` output and psql's invocation (pure: no server)."""

from __future__ import annotations

import pytest

from dynos.cli.commands.pg import format_backups, format_info, human_size, psql_command
from dynos.errors import UserError

INFO = {
    "addon": {"id": "1", "name": "postgresql-solid-12345"},
    "config_var": "DATABASE_URL",
    "plan": {"name": "essential-0", "display_name": "Essential 0"},
    "status": "Available",
    "postgres_version": "15.14",
    "data_size": 7 * 1024 * 1024 + 512 * 1024,
    "storage_cap": 1024**3,
    "tables": 3,
    "connections": 2,
    "connection_limit": 20,
    "created_at": "2026-12-01T04:00:00Z",
}


def test_pg_info_prints_herokus_block() -> None:
    assert format_info(INFO) == [
        "=== DATABASE_URL",
        "Plan:        Essential 0",
        "Status:      Available",
        "Connections: 2/20",
        "PG Version:  15.14",
        "Created:     2026-12-01T04:00:00Z",
        "Data Size:   7.5 MB / 1 GB (0.73%)",
        "Tables:      3",
        "Add-on:      postgresql-solid-12345",
        "",
    ]


def test_sizes_read_as_herokus() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 64 * 1024**3)] == [
        "0 bytes",
        "1023 bytes",
        "1 kB",
        "1.5 kB",
        "64 GB",
    ]


def test_backups_list_newest_first_or_say_there_are_none() -> None:
    backups = [
        {
            "id": f"b00{n}",
            "created_at": f"2026-12-01T0{n}:00:00Z",
            "status": "Completed",
            "size": 2048,
            "database": "DATABASE",
        }
        for n in (1, 2)
    ]
    lines = format_backups("myapp", backups)
    assert lines[0] == "=== Backups of myapp"
    rows = [line for line in lines if line.startswith(" b00") or line.startswith("b00")]
    assert [row.split()[0] for row in rows] == ["b002", "b001"]
    assert "No backups" in format_backups("myapp", [])[-1]


def test_psql_gets_the_credentials_in_its_environment_not_its_command_line() -> None:
    argv, env = psql_command("/usr/bin/psql", "postgres://u1:s%40cret@127.0.0.1:6543/d1", None)
    assert argv == ["/usr/bin/psql", "-X"]
    assert env == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "6543",
        "PGUSER": "u1",
        "PGPASSWORD": "s@cret",
        "PGDATABASE": "d1",
        "PGSSLMODE": "require",
    }
    argv, _ = psql_command("/usr/bin/psql", "postgres://u1:p@127.0.0.1:6543/d1", "SELECT 1")
    assert argv[-2:] == ["-c", "SELECT 1"] and "p" not in " ".join(argv[1:-2]).split()
    with pytest.raises(UserError, match="not a postgres:// URL"):
        psql_command("/usr/bin/psql", "redis://:x@127.0.0.1:6379", None)
