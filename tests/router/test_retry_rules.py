"""The retry rules (router/retry.py), without sockets: what the router does after a dyno
connection fails before any byte of its response."""

from __future__ import annotations

import itertools

import pytest

from dynos.router.retry import (
    RETRY_BODY_LIMIT,
    Attempts,
    ReplayBody,
    Retry,
    retry_after_close,
)


def decide(**overrides: bool) -> Retry:
    facts = {
        "malformed": False,
        "received": False,
        "replayable": True,
        "reused": False,
        "new_connection_tried": False,
    }
    facts.update(overrides)
    return retry_after_close(**facts)


def test_a_fresh_connection_closed_before_any_byte_sends_an_idempotent_request_elsewhere() -> None:
    assert decide() is Retry.NEXT_DYNO


def test_a_reused_connection_closed_before_any_byte_is_retried_once_on_a_new_connection() -> None:
    assert decide(reused=True) is Retry.NEW_CONNECTION
    assert decide(reused=True, new_connection_tried=True) is Retry.NEXT_DYNO


@pytest.mark.parametrize("fact", ["malformed", "received"])
def test_never_after_a_response_byte_or_a_malformed_response(fact: str) -> None:
    for reused, tried in itertools.product((False, True), repeat=2):
        assert decide(**{fact: True, "reused": reused, "new_connection_tried": tried}) is Retry.NO


def test_never_a_request_whose_body_is_not_held_whole() -> None:
    assert decide(replayable=False) is Retry.NO
    assert decide(replayable=False, reused=True) is Retry.NO


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"])
def test_idempotent_methods_keep_their_body(method: bytes) -> None:
    replay = ReplayBody.for_method(method)
    assert replay is not None
    replay.add(b"abc")
    replay.add(b"de")
    assert (replay.pieces, replay.size, replay.whole) == ([b"abc", b"de"], 5, True)


@pytest.mark.parametrize("method", [b"POST", b"PATCH", b"CONNECT", b"get"])
def test_other_methods_are_never_replayed(method: bytes) -> None:
    assert ReplayBody.for_method(method) is None


def test_a_body_past_the_limit_is_not_kept_and_stays_lost() -> None:
    replay = ReplayBody()
    replay.add(b"x" * RETRY_BODY_LIMIT)
    assert replay.whole
    replay.add(b"y")
    assert not replay.whole and replay.pieces is None
    replay.add(b"z")
    assert replay.pieces is None


def test_attempts_remember_the_dynos_tried_and_how_to_connect_next() -> None:
    attempts: Attempts[str] = Attempts()
    attempts.connect_failed("web.1")
    assert attempts.tried == ["web.1"]
    attempts.closed("web.2", Retry.NEW_CONNECTION)
    assert attempts.tried == ["web.1"]  # the same dyno may take it again
    assert attempts.new_connection and attempts.new_connection_tried
    attempts.closed("web.2", Retry.NEXT_DYNO)
    assert attempts.tried == ["web.1", "web.2"]
    assert not attempts.new_connection and attempts.new_connection_tried
