"""Redis plans: Heroku's sizes and connection limits, and the config they give redis-server."""

from __future__ import annotations

import pytest

from dynos.core.redis_plans import DEFAULT_PLAN, MB, cgroup_size, find_plan, plan_for
from dynos.errors import UserError
from dynos.platform.redis_server import redis_config


def test_plans_are_found_by_heroku_names_and_default_to_mini() -> None:
    assert plan_for("redis") == plan_for("heroku-redis") == DEFAULT_PLAN == find_plan("mini")
    assert plan_for("heroku-redis:hobby-dev") == find_plan("mini")  # its old name
    assert plan_for("redis:local") == find_plan("mini")  # add-ons made before plans
    assert find_plan("private-7") == find_plan("shield-7") == find_plan("premium-7")
    assert (find_plan("premium-0").memory_mb, find_plan("premium-0").max_clients) == (50, 40)
    for wrong in ("private-0", "premium-99", "huge"):
        with pytest.raises(UserError, match="Unknown Redis plan"):
            find_plan(wrong)


def test_a_plan_sets_maxmemory_noeviction_and_maxclients_and_locks_config() -> None:
    config = redis_config(6400, "ab12", find_plan("premium-1")).splitlines()
    assert f"maxmemory {100 * MB}" in config
    assert "maxmemory-policy noeviction" in config
    assert "maxclients 80" in config
    [user] = [line for line in config if line.startswith("user default ")]
    assert user.startswith("user default on >ab12 ~* &* +@all ")
    assert {"-config", "-acl", "-module", "-shutdown", "-replicaof"} <= set(user.split())
    assert not [line for line in config if line.startswith(("requirepass", "dir /"))]
    assert "bind 127.0.0.1" in config
    # The docker backend's containers reach it on their bridge's gateway too.
    bound = redis_config(6400, "ab12", find_plan("mini"), "172.18.0.1").splitlines()
    assert "bind 127.0.0.1 172.18.0.1" in bound


def test_an_add_on_cgroup_is_capped_at_twice_the_data_plus_the_server_overhead() -> None:
    plan = find_plan("mini")
    assert plan.memory_cap_bytes == (2 * 25 + 64) * MB
    assert cgroup_size(plan).memory_limit_bytes == plan.memory_cap_bytes
