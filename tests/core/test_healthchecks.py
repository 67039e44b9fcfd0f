"""app.json's health checks (Dokku's fields): parsed with defaults, refused with a message
naming the field, and how an answer is judged. Pure."""

from __future__ import annotations

import json

import pytest

from dynos.core.healthchecks import NO_CHECKS, CheckType, HealthCheck, parse_app_json
from dynos.errors import UserError


def checks(*web: object) -> str:
    return json.dumps({"name": "demo", "healthchecks": {"web": list(web)}})


def test_an_app_json_without_healthchecks_has_none() -> None:
    assert parse_app_json('{"name": "demo"}') == NO_CHECKS
    assert parse_app_json(checks()).web == ()


def test_dokkus_fields_and_defaults() -> None:
    parsed = parse_app_json(
        checks(
            {
                "type": "startup",
                "name": "ready",
                "path": "/health/ready",
                "attempts": 4,
                "timeout": 2,
                "wait": 1,
                "initialDelay": 3,
                "content": "ok",
            },
            {"path": "/"},
            {"type": "liveness", "path": "/live", "wait": 0.5},
        )
    )
    first, second, third = parsed.web
    assert first == HealthCheck(
        CheckType.STARTUP, "/health/ready", 4, 2.0, 1.0, 3.0, name="ready", content="ok"
    )
    assert second == HealthCheck(CheckType.STARTUP, "/", 3, 5.0, 5.0, 0.0)
    assert third.type is CheckType.LIVENESS and third.wait == 0.5
    assert parsed.gating == (first, second)
    assert parsed.liveness == (third,)


def test_readiness_gates_a_start_as_startup_does() -> None:
    parsed = parse_app_json(checks({"type": "readiness", "path": "/ready"}))
    assert [c.type for c in parsed.gating] == [CheckType.READINESS]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{not json", "app.json is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"healthchecks": []}', "healthchecks must be an object"),
        ('{"healthchecks": {"worker": []}}', "healthchecks.worker only web dynos"),
        ('{"healthchecks": {"web": {}}}', "healthchecks.web must be a list"),
        (checks("/health"), "healthchecks.web[0] must be an object"),
        (checks({"type": "uptime"}), "healthchecks.web[0].type must be startup"),
        (checks({"path": "health"}), "healthchecks.web[0].path must be a path"),
        (checks({"path": "/a b"}), "healthchecks.web[0].path must hold no spaces"),
        (checks({"attempts": 0}), "healthchecks.web[0].attempts must be from 1"),
        (checks({"attempts": 1.5}), "healthchecks.web[0].attempts must be a whole number"),
        (checks({"timeout": "5"}), "healthchecks.web[0].timeout must be a number"),
        (checks({"wait": True}), "healthchecks.web[0].wait must be a number"),
        (checks({"initialDelay": -1}), "healthchecks.web[0].initialDelay must be from 0"),
        (checks({"port": 5000}), "healthchecks.web[0].port dynos checks each web dyno"),
        (checks({"command": ["true"]}), "healthchecks.web[0].command dynos runs HTTP checks"),
        (checks({"uptime": 5}), "healthchecks.web[0].uptime dynos has no uptime checks"),
        (checks({"pth": "/"}), "healthchecks.web[0].pth is not a health check field"),
        (checks({"content": ""}), "healthchecks.web[0].content must be a non-empty string"),
        (checks({"name": 3}), "healthchecks.web[0].name must be a string"),
    ],
)
def test_a_bad_app_json_is_refused_naming_the_field(text: str, said: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_app_json(text)
    assert said in caught.value.message
    assert caught.value.message.endswith("deploy again.")


def test_an_oversized_app_json_is_refused() -> None:
    with pytest.raises(UserError, match="over 1 MB"):
        parse_app_json(" " * (1 << 20 | 1))


def test_an_answer_passes_on_2xx_or_3xx_and_the_content_asked_for() -> None:
    check = HealthCheck(CheckType.STARTUP, "/", content="ready")
    assert check.verdict(200, b"HTTP/1.0 200 OK\r\n\r\nall ready") is None
    assert check.verdict(302, b"ready") is None
    assert check.verdict(500, b"ready") == "answered 500"
    assert check.verdict(200, b"booting") == "answered 200 without 'ready' in its body"
    assert HealthCheck(CheckType.LIVENESS, "/").verdict(204, b"") is None
