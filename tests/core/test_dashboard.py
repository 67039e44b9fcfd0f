"""The dashboard's sign-in rules (core/dashboard.py): sessions, the throttle, same origin."""

from __future__ import annotations

from dynos.core.dashboard import (
    FAILURE_WINDOW,
    FAILURES_ALLOWED,
    IDLE_TIMEOUT,
    MAX_AGE,
    MAX_SESSIONS,
    SessionTable,
    SignInThrottle,
    csrf_matches,
    same_origin,
)


def test_a_session_is_found_by_its_id_until_it_ends() -> None:
    table = SessionTable()
    session = table.create("id-1", "csrf-1", now=0)
    assert table.get("id-1", now=10) is session
    assert table.get("id-2", now=10) is None
    assert table.get(None, now=10) is None
    assert table.get("", now=10) is None
    table.end("id-1")
    assert table.get("id-1", now=11) is None


def test_an_idle_session_expires_and_use_keeps_it_alive_up_to_its_max_age() -> None:
    table = SessionTable()
    table.create("idle", "c", now=0)
    assert table.get("idle", now=IDLE_TIMEOUT + 1) is None
    table.create("busy", "c", now=0)
    now = 0.0
    while now + IDLE_TIMEOUT / 2 < MAX_AGE:
        now += IDLE_TIMEOUT / 2
        assert table.get("busy", now) is not None
    assert table.get("busy", MAX_AGE + 1) is None


def test_the_table_keeps_at_most_max_sessions_dropping_the_oldest() -> None:
    table = SessionTable()
    for n in range(MAX_SESSIONS + 5):
        table.create(f"s{n}", "c", now=n)
    assert len(table) == MAX_SESSIONS
    assert table.get("s0", now=MAX_SESSIONS + 5) is None
    assert table.get(f"s{MAX_SESSIONS + 4}", now=MAX_SESSIONS + 5) is not None


def test_csrf_tokens_must_match_exactly() -> None:
    session = SessionTable().create("id", "the-token", now=0)
    assert csrf_matches(session, "the-token")
    assert not csrf_matches(session, "the-tokeN")
    assert not csrf_matches(session, "")
    assert not csrf_matches(session, None)


def test_failed_sign_ins_past_the_allowance_make_an_address_wait_until_the_window_passes() -> None:
    throttle = SignInThrottle()
    for n in range(FAILURES_ALLOWED):
        assert throttle.wait("10.0.0.1", now=n) == 0
        throttle.failed("10.0.0.1", now=n)
    assert throttle.wait("10.0.0.1", now=FAILURES_ALLOWED) == FAILURE_WINDOW - FAILURES_ALLOWED
    assert throttle.wait("10.0.0.2", now=FAILURES_ALLOWED) == 0  # others are not held up
    assert throttle.wait("10.0.0.1", now=FAILURE_WINDOW) == 0  # the first failure aged out


def test_a_success_forgets_the_failures() -> None:
    throttle = SignInThrottle()
    for n in range(FAILURES_ALLOWED - 1):
        throttle.failed("a", now=n)
    throttle.succeeded("a")
    throttle.failed("a", now=10)
    assert throttle.wait("a", now=10) == 0


def test_same_origin_needs_the_scheme_and_host_of_the_request() -> None:
    host = "127.0.0.1:8000"
    assert same_origin("http://127.0.0.1:8000", None, "http", host)
    assert same_origin("HTTP://127.0.0.1:8000", None, "http", host.upper())
    assert same_origin(None, "http://127.0.0.1:8000/dashboard/apps/x", "http", host)
    assert not same_origin("http://evil.example", None, "http", host)
    assert not same_origin("https://127.0.0.1:8000", None, "http", host)  # another origin
    assert not same_origin("http://127.0.0.1:8001", None, "http", host)
    assert not same_origin("null", None, "http", host)
    assert not same_origin(None, None, "http", host)
    assert not same_origin("http://127.0.0.1:8000", None, "http", None)
    # Origin wins over a Referer that would match.
    assert not same_origin("http://evil.example", "http://127.0.0.1:8000/", "http", host)
