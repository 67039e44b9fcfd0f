"""Postgres add-on rules: Heroku's plans, attachment names and colors, database names, URLs,
the storage check's decision and backup ids."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import pytest

from dynos.core import postgres_plans as plans
from dynos.errors import UserError


def test_plans_are_found_by_heroku_names_and_default_to_essential_0() -> None:
    assert (
        plans.plan_of("heroku-postgresql") == plans.DEFAULT_PLAN == plans.find_plan("essential-0")
    )
    assert plans.plan_of("postgresql:essential-2") == plans.find_plan("essential-2")
    assert plans.find_plan("mini") == plans.find_plan("hobby-dev") == plans.find_plan("essential-0")
    assert plans.find_plan("basic") == plans.find_plan("essential-1")
    assert (
        plans.find_plan("premium-4") == plans.find_plan("shield-4") == plans.find_plan("standard-4")
    )
    essential0, standard0 = plans.find_plan("essential-0"), plans.find_plan("standard-0")
    assert (essential0.connections, essential0.storage_bytes) == (20, 1024**3)
    assert (standard0.connections, standard0.storage_bytes) == (120, 64 * 1024**3)
    assert standard0.display_name == "Standard 0"
    for wrong in ("standard-1", "essential-9", "huge", "premium-x"):
        with pytest.raises(UserError, match="Unknown Postgres plan"):
            plans.find_plan(wrong)


def test_only_postgres_names_are_postgres() -> None:
    for name in ("heroku-postgresql", "postgresql:standard-0", " Postgres ", "HEROKU-POSTGRESQL:x"):
        assert plans.is_postgres(name)
    for name in ("redis", "heroku-redis:mini", "postgresqlx", ""):
        assert not plans.is_postgres(name)


def test_first_database_is_database_url_then_a_free_color() -> None:
    assert plans.config_var_for(set()) == "DATABASE_URL"
    assert plans.config_var_for({"REDIS_URL"}) == "DATABASE_URL"
    taken = {"DATABASE_URL"} | {f"HEROKU_POSTGRESQL_{c}_URL" for c in plans.COLORS[1:]}
    assert plans.config_var_for(taken) == f"HEROKU_POSTGRESQL_{plans.COLORS[0]}_URL"
    chosen = {plans.config_var_for({"DATABASE_URL"}, random.Random(seed)) for seed in range(50)}
    assert len(chosen) > 10 and all(v.startswith("HEROKU_POSTGRESQL_") for v in chosen)
    with pytest.raises(UserError, match="Every HEROKU_POSTGRESQL_<COLOR>_URL is taken"):
        plans.config_var_for(taken | {f"HEROKU_POSTGRESQL_{plans.COLORS[0]}_URL"})
    assert plans.attachment_name("HEROKU_POSTGRESQL_PINK_URL") == "HEROKU_POSTGRESQL_PINK"


def test_database_names_are_safe_identifiers_from_add_on_names() -> None:
    assert plans.database_name("postgresql-solid-12345") == "postgresql_solid_12345"
    for wrong in ("Robert'); DROP", "1abc", "a b", "", "é-x", "x" * 64):
        with pytest.raises(UserError):
            plans.database_name(wrong)


def test_the_url_is_herokus_postgres_form_on_loopback() -> None:
    url = plans.database_url("postgresql_a_1", "ab12", 6543)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("postgres", "127.0.0.1", 6543)
    assert (parts.username, parts.password, parts.path) == (
        "postgresql_a_1",
        "ab12",
        "/postgresql_a_1",
    )


@pytest.mark.parametrize(
    ("size", "restricted", "action"),
    [
        (100, False, None),
        (101, False, "restrict"),
        (101, True, None),
        (100, True, "restore"),
        (5, True, "restore"),
    ],
)
def test_storage_check_restricts_past_the_cap_and_restores_within_it(
    size: int, restricted: bool, action: str | None
) -> None:
    assert plans.storage_action(size, 100, restricted) == action


def test_backup_ids_are_herokus_and_nothing_else_passes() -> None:
    assert plans.backup_id(1) == "b001" and plans.backup_id(1234) == "b1234"
    assert plans.backup_number("b001") == plans.backup_number("1") == plans.backup_number("B1") == 1
    for wrong in ("b000", "../x", "b1/..", "b\u0661", "b", "latest", "b" + "9" * 10, "b-1"):
        with pytest.raises(UserError, match="Invalid backup"):
            plans.backup_number(wrong)
