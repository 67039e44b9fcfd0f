"""The Postgres cluster's recorded port and access rules (no cluster is started)."""

from __future__ import annotations

import json
from pathlib import Path

from dynos.backends.sandbox import Sandboxes
from dynos.core.postgres_config import SUPERUSER, hba
from dynos.platform.postgres_server import Cluster


def test_a_port_recorded_outside_the_add_on_range_is_moved_into_it_with_the_password(
    tmp_path: Path,
) -> None:
    # A home that ran --backend local before --backend swarm: its cluster's port is one no
    # swarm task reaches.
    (tmp_path / "admin.json").write_text(json.dumps({"port": 25001, "password": "secret"}))
    handed = iter([19007, 19008])
    cluster = Cluster(tmp_path, Sandboxes(), None, lambda: next(handed), ports=range(19000, 20000))
    admin = cluster.admin()
    assert (admin.port, admin.password) == (19007, "secret")
    assert json.loads((tmp_path / "admin.json").read_text()) == {
        "port": 19007,
        "password": "secret",
    }
    assert cluster.admin().port == 19007  # recorded: not moved again


def test_without_a_range_the_recorded_port_stays(tmp_path: Path) -> None:
    (tmp_path / "admin.json").write_text(json.dumps({"port": 25001, "password": "secret"}))
    cluster = Cluster(tmp_path, Sandboxes(), None, lambda: 19007)
    assert cluster.admin().port == 25001


def test_apps_roles_come_in_from_the_given_network_and_the_superuser_from_loopback_only() -> None:
    rules = [line.split() for line in hba("0.0.0.0/0").splitlines() if line.startswith("host")]
    assert rules == [
        ["hostssl", "all", SUPERUSER, "127.0.0.1/32", "scram-sha-256"],
        ["hostssl", "sameuser", "all", "127.0.0.1/32", "scram-sha-256"],
        ["hostssl", "sameuser", "all", "0.0.0.0/0", "scram-sha-256"],
    ]
    assert "0.0.0.0" not in hba()
