"""core/acm.py: when a certificate is due, and what an attempt makes of an app's ACM status.
Pure: records and times in, no clock read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dynos.core.acm import (
    TRANSITIONS,
    AcmRecord,
    AcmStatus,
    DueReason,
    RenewalPolicy,
    check_status_change,
    domain_status,
    due,
    enabled,
    failed_attempt,
    issued,
    next_check,
    normalized_hosts,
    refreshed,
    renewal_time,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = RenewalPolicy()
HOSTS = ("shop.example.com",)


def with_cert(days: int = 90, at: datetime = T0, hosts: tuple[str, ...] = HOSTS) -> AcmRecord:
    record = enabled("app-1", at)
    return issued(record, hosts, at, at + days * DAY, at)


def test_a_90_day_certificate_renews_30_days_before_it_expires() -> None:
    assert renewal_time(T0, T0 + 90 * DAY, POLICY) == T0 + 60 * DAY


def test_a_short_certificate_renews_with_a_third_of_its_life_left() -> None:
    assert renewal_time(T0, T0 + 6 * DAY, POLICY) == T0 + 4 * DAY
    assert renewal_time(T0, T0 + timedelta(seconds=15), POLICY) == T0 + timedelta(seconds=10)


def test_a_long_certificate_renews_30_days_before_at_the_latest() -> None:
    assert renewal_time(T0, T0 + 365 * DAY, POLICY) == T0 + 335 * DAY


def test_a_fixed_renew_before_overrides_the_rule() -> None:
    policy = RenewalPolicy(renew_before=timedelta(days=10))
    assert renewal_time(T0, T0 + 90 * DAY, policy) == T0 + 80 * DAY
    # Longer than the certificate lives: half its lifetime, not an order after every order.
    longer = RenewalPolicy(renew_before=timedelta(days=100))
    assert renewal_time(T0, T0 + 90 * DAY, longer) == T0 + 45 * DAY


def test_an_app_just_enabled_is_due_at_once() -> None:
    record = enabled("app-1", T0)
    assert record.status is AcmStatus.PENDING
    assert due(record, HOSTS, T0, POLICY) is DueReason.FIRST
    assert next_check(record, HOSTS, T0, POLICY) == T0


def test_an_issued_certificate_is_due_only_at_renewal_time() -> None:
    record = with_cert()
    assert record.status is AcmStatus.ISSUED
    assert due(record, HOSTS, T0 + 59 * DAY, POLICY) is None
    assert next_check(record, HOSTS, T0 + DAY, POLICY) == T0 + 60 * DAY
    assert due(record, HOSTS, T0 + 60 * DAY, POLICY) is DueReason.RENEWAL


def test_a_host_the_certificate_does_not_cover_makes_it_due() -> None:
    record = with_cert()
    wanted = ("shop.example.com", "www.example.com")
    assert due(record, wanted, T0 + DAY, POLICY) is DueReason.HOSTS
    assert domain_status(record, "www.example.com") == ("pending", None)
    assert domain_status(record, "shop.example.com") == ("cert issued", None)
    # A host removed needs no new certificate.
    assert due(record, (), T0 + DAY, POLICY) is None


def test_failures_are_retried_later_and_later_then_fail() -> None:
    policy = RenewalPolicy(
        retry_first=timedelta(minutes=1), retry_max=timedelta(minutes=3), max_failures=4
    )
    record = enabled("app-1", T0)
    now = T0
    waits = []
    for _ in range(3):
        record = failed_attempt(record, "Validation failed: no answer", now, policy)
        assert record.status is AcmStatus.FAILING
        assert record.retry_at is not None
        waits.append(record.retry_at - now)
        assert due(record, HOSTS, record.retry_at - timedelta(seconds=1), policy) is None
        now = record.retry_at
        assert due(record, HOSTS, now, policy) is DueReason.RETRY
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=3)]
    record = failed_attempt(record, "Validation failed: no answer", now, policy)
    assert record.status is AcmStatus.FAILED
    assert due(record, HOSTS, now + 365 * DAY, policy) is None
    assert next_check(record, HOSTS, now, policy) is None
    assert domain_status(record, "shop.example.com") == ("failed", "Validation failed: no answer")


def test_a_failed_renewal_keeps_the_certificate_and_retries() -> None:
    record = with_cert()
    renew_at = T0 + 60 * DAY
    failing = failed_attempt(record, "The ACME server refused: rate limited", renew_at, POLICY)
    assert failing.status is AcmStatus.FAILING
    assert failing.not_after == record.not_after and failing.hosts == record.hosts
    assert due(failing, HOSTS, renew_at, POLICY) is None  # not before the retry
    assert due(failing, HOSTS, failing.retry_at, POLICY) is DueReason.RENEWAL  # type: ignore[arg-type]
    renewed = issued(failing, HOSTS, renew_at, renew_at + 90 * DAY, renew_at)
    assert (renewed.status, renewed.reason, renewed.failures) == (AcmStatus.ISSUED, None, 0)


def test_refresh_makes_a_failed_app_due_again() -> None:
    policy = RenewalPolicy(max_failures=1)
    record = failed_attempt(enabled("app-1", T0), "nope", T0, policy)
    assert record.status is AcmStatus.FAILED
    again = refreshed(record, T0 + DAY)
    assert (again.status, again.failures, again.reason) == (AcmStatus.PENDING, 0, None)
    assert due(again, HOSTS, T0 + DAY, policy) is DueReason.FIRST


def test_a_failed_app_moves_only_when_refreshed() -> None:
    assert TRANSITIONS[AcmStatus.FAILED] == frozenset({AcmStatus.PENDING})
    with pytest.raises(ValueError, match="cannot go from failed to cert issued"):
        check_status_change(AcmStatus.FAILED, AcmStatus.ISSUED)
    record = failed_attempt(enabled("a", T0), "x", T0, RenewalPolicy(max_failures=1))
    with pytest.raises(ValueError):
        issued(record, HOSTS, T0, T0 + DAY, T0)


def test_hosts_are_compared_without_case_or_trailing_dot() -> None:
    assert normalized_hosts(["WWW.Example.com.", "www.example.com", "a.example.com"]) == (
        "a.example.com",
        "www.example.com",
    )
    record = with_cert(hosts=("Shop.Example.com",))
    assert due(record, ["shop.example.com."], T0 + DAY, POLICY) is None


def test_acm_off_has_no_status() -> None:
    assert domain_status(None, "shop.example.com") == (None, None)
