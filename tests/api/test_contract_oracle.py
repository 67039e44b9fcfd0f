"""The schema oracle itself: it must reject what the contract forbids, and relax only what
tests/api/contract.py lists."""

from __future__ import annotations

from typing import Any

from tests.api.contract import RELAXED, problems, schema

SIZE: dict[str, Any] = {
    "id": "6f0a4b1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
    "name": "Standard-1X",
    "compute": 1,
    "memory": 0.5,
    "cost": None,
    "dedicated": False,
    "dyno_units": 1,
    "private_space_only": False,
}


def test_conforming_body_has_no_problems() -> None:
    assert problems(SIZE, "dyno-size", "Info") == []


def test_missing_property_is_a_problem() -> None:
    body = {k: v for k, v in SIZE.items() if k != "dedicated"}
    assert problems(body, "dyno-size", "Info") == ["missing property 'dedicated'"]


def test_wrong_type_is_a_problem() -> None:
    assert problems({**SIZE, "compute": "1"}, "dyno-size", "Info") != []


def test_id_that_is_not_a_uuid_is_a_problem() -> None:
    assert problems({**SIZE, "id": "standard-1x"}, "dyno-size", "Info") != []


def test_list_items_are_checked_one_by_one() -> None:
    assert problems([SIZE, {**SIZE, "memory": None}], "dyno-size", "List") != []


def test_timestamp_not_in_utc_is_a_problem() -> None:
    session = {
        "id": "6f0a4b1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
        "logplex_url": "http://127.0.0.1:5050/log-sessions/x",
        "created_at": "2026-11-27T03:50:00Z",
        "updated_at": "2026-11-27T03:50:00+01:00",
    }
    assert problems(session, "log-session", "Create") != []
    assert (
        problems({**session, "updated_at": "2026-11-27T03:50:00Z"}, "log-session", "Create") == []
    )


def test_only_the_listed_keywords_are_relaxed() -> None:
    app = schema()["definitions"]["app"]["definitions"]
    for (_, prop), (keyword, _why) in RELAXED.items():
        assert keyword not in app[prop]
        assert "type" in app[prop]  # the type still holds
    assert "pattern" in app["name"]  # an app name keeps Heroku's rule
