"""The `ps` layout and the "ago" rule, from plain dyno dicts and a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dynos.cli.commands.ps import format_ps, process_number
from dynos.cli.style import ago, format_since

NOW = datetime(2026, 11, 27, 3, 51, 0, tzinfo=UTC)


def dyno(
    name: str, command: str, *, state: str = "up", size: str = "Standard-1X"
) -> dict[str, Any]:
    type_ = name.split(".")[0]
    return {
        "id": f"id-{name}",
        "name": name,
        "type": type_,
        "size": size,
        "state": state,
        "command": command,
        "created_at": "2026-11-27T03:40:00Z",
        "updated_at": "2026-11-27T03:50:00Z",
        "release": {"id": "r1", "version": 1},
        "app": {"id": "a1", "name": "hello"},
    }


def test_ps_groups_dynos_by_type_under_heroku_headers() -> None:
    dynos = [
        dyno("worker.1", "python3 worker.py"),
        dyno("web.2", "python3 web.py"),
        dyno("web.1", "python3 web.py"),
    ]
    text = "\n".join(format_ps("hello", dynos, NOW, UTC))
    assert text == (
        "=== web (Standard-1X): python3 web.py (2)\n"
        "web.1: up 2026/11/27 03:50:00 +0000 (~ 1m ago)\n"
        "web.2: up 2026/11/27 03:50:00 +0000 (~ 1m ago)\n"
        "\n"
        "=== worker (Standard-1X): python3 worker.py (1)\n"
        "worker.1: up 2026/11/27 03:50:00 +0000 (~ 1m ago)\n"
    )


def test_ps_sorts_dynos_by_number_not_by_text() -> None:
    dynos = [dyno(f"web.{n}", "web") for n in (10, 2, 1)]
    lines = format_ps("hello", dynos, NOW, UTC)
    assert [line.split(":")[0] for line in lines[1:4]] == ["web.1", "web.2", "web.10"]


def test_ps_shows_each_dynos_own_state() -> None:
    lines = format_ps("hello", [dyno("web.1", "web", state="crashed")], NOW, UTC)
    assert lines[1].startswith("web.1: crashed 2026/11/27")


def test_ps_puts_dynos_of_one_type_with_different_sizes_in_separate_groups() -> None:
    dynos = [dyno("web.1", "web"), dyno("web.2", "web", size="Standard-2X")]
    headers = [line for line in format_ps("hello", dynos, NOW, UTC) if line.startswith("===")]
    assert headers == ["=== web (Standard-1X): web (1)", "=== web (Standard-2X): web (1)"]


def test_ps_lists_one_off_dynos_with_their_command() -> None:
    lines = format_ps("hello", [dyno("run.4821", "bash")], NOW, UTC)
    assert lines[:2] == [
        "=== run: one-off processes (1)",
        "run.4821 (Standard-1X): up 2026/11/27 03:50:00 +0000 (~ 1m ago): bash",
    ]


def test_ps_without_dynos_says_so_for_the_app() -> None:
    assert format_ps("hello", [], NOW) == ["No dynos on \u2b22 hello"]


def test_ps_shows_times_in_the_given_time_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    lines = format_ps("hello", [dyno("web.1", "web")], NOW, plus_two)
    assert lines[1] == "web.1: up 2026/11/27 05:50:00 +0200 (~ 1m ago)"


def test_process_number_of_a_name_without_number_is_zero() -> None:
    assert process_number("web") == 0
    assert process_number("web.12") == 12


def test_ago_counts_whole_seconds_under_a_minute() -> None:
    assert ago(NOW - timedelta(seconds=59.9), NOW) == "(~ 59s ago)"


def test_ago_counts_whole_minutes_under_an_hour() -> None:
    assert ago(NOW - timedelta(seconds=60), NOW) == "(~ 1m ago)"
    assert ago(NOW - timedelta(minutes=59, seconds=59), NOW) == "(~ 59m ago)"


def test_ago_counts_hours_up_to_twenty_five() -> None:
    assert ago(NOW - timedelta(hours=1), NOW) == "(~ 1h ago)"
    assert ago(NOW - timedelta(hours=24, minutes=59), NOW) == "(~ 24h ago)"


def test_ago_is_empty_from_twenty_five_hours_on() -> None:
    assert ago(NOW - timedelta(hours=25), NOW) == ""
    assert format_since(NOW - timedelta(days=3), NOW, UTC) == "2026/11/24 03:51:00 +0000"


def test_ago_treats_a_time_in_the_future_as_just_now() -> None:
    assert ago(NOW + timedelta(seconds=5), NOW) == "(~ 0s ago)"
