"""`run` and `addons` output and argument handling, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynos.cli.commands.addons import created_line, format_addons
from dynos.cli.commands.ps import format_ps
from dynos.cli.commands.run import build_command, dyno_label, hoist_options, parse_env
from dynos.errors import UserError

NOW = datetime(2026, 11, 27, 3, 51, tzinfo=UTC)


def test_one_argument_is_the_command_line_and_several_are_quoted() -> None:
    assert build_command(["rake test"]) == "rake test"
    assert build_command(["echo", "a b", "$HOME"]) == "echo 'a b' '$HOME'"


def test_env_options_take_several_pairs_and_refuse_one_without_a_name() -> None:
    assert parse_env(["A=1;B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(UserError, match="-e KEY=value"):
        parse_env(["=1"])


def test_run_lines_end_with_the_dyno_and_its_size() -> None:
    assert dyno_label({"name": "run.4821", "size": "Standard-1X"}) == "run.4821 (Standard-1X)"


def test_one_off_dynos_are_listed_first_in_ps() -> None:
    stamp = "2026-11-27T03:50:00Z"
    dynos = [
        {"name": "api.1", "type": "api", "command": "a", "state": "up", "updated_at": stamp},
        {"name": "run.4821", "type": "run", "command": "bash", "state": "up", "updated_at": stamp},
    ]
    lines = format_ps("app", dynos, NOW, UTC)
    assert lines[:2] == [
        "=== run: one-off processes (1)",
        "run.4821 (Standard-1X): up 2026/11/27 03:50:00 +0000 (~ 1m ago): bash",
    ]
    assert lines[3] == "=== api (Standard-1X): a (1)"


def test_addons_table_shows_service_name_plan_state_and_attachment() -> None:
    addon = {
        "name": "redis-solid-31337",
        "addon_service": {"name": "redis"},
        "plan": {"name": "redis:local"},
        "state": "provisioned",
        "config_vars": ["REDIS_URL"],
    }
    assert format_addons("app", [addon]) == [
        "Add-on                     Plan   Price  State",
        "redis (redis-solid-31337)  local  free   created",
        " └─ as REDIS",
        "",
    ]
    assert format_addons("app", []) == ["No add-ons for app app."]
    assert created_line(addon) == "Created redis-solid-31337 as REDIS_URL"


RUN_OPTIONS = {"-a": True, "--app": True, "-e": True, "--no-tty": False}


def test_run_options_are_taken_anywhere_before_dashes_as_heroku_run_takes_them() -> None:
    def hoist(*args: str) -> list[str]:
        return hoist_options(args, RUN_OPTIONS)

    assert hoist("bash", "-a", "myapp") == ["-a", "myapp", "--", "bash"]
    assert hoist("python3", "manage.py", "migrate", "--app=myapp", "--no-tty") == [
        *("--app=myapp", "--no-tty", "--"),
        *("python3", "manage.py", "migrate"),
    ]
    assert hoist("-amyapp", "ls", "-la") == ["-amyapp", "--", "ls", "-la"]
    assert hoist("-a", "x", "--", "ls", "-a", "--") == ["-a", "x", "--", "ls", "-a", "--"]
    assert hoist("grep", "-e", "K=v", "--", "-e") == ["-e", "K=v", "--", "grep", "-e"]
