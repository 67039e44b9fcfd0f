"""Automatic certificate management (Heroku's ACM): an app's status, when its certificate is
due, and what an attempt's outcome makes of the status.

An app with ACM enabled has one record: the status below, why it is so, the names its
current certificate covers and when that certificate is valid. The platform asks ``due``
which apps need an ACME order now (no certificate yet, its names no longer cover the app's
hosts, renewal time, a retry after a failure) and ``next_check`` when to look again; it
moves the record through ``issued``, ``failed_attempt`` and ``refreshed``, each checked
against the transition table.

Renewal: a certificate is renewed when a third of its lifetime is left, and at the latest 30
days before it expires (Let's Encrypt's advice for its 90-day certificates: renew at 60
days), unless the server sets a fixed ``renew_before``. Failures are retried after a delay that
doubles, until ``max_failures`` in a row make the status ``failed``: then only
``certs:auto:refresh`` tries again, as on Heroku.

Pure: records and ``now`` in, decisions out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"  # the default
RENEW_AT_LATEST = timedelta(days=30)  # before expiry, whatever the lifetime
RENEW_FRACTION = 3  # renew when 1/RENEW_FRACTION of the lifetime is left
MIN_RENEW_BEFORE = timedelta(seconds=1)  # even a certificate of a minute is renewed in time


class AcmStatus(StrEnum):
    """An app's (and its domains') ``acm_status`` in the Platform API."""

    PENDING = "pending"  # enabled, refreshed or given a new host: an order is due
    ISSUED = "cert issued"  # the certificate covers every host of the app
    FAILING = "failing"  # the last attempt failed; another one is scheduled
    FAILED = "failed"  # max_failures attempts in a row failed: certs:auto:refresh retries


_ANY = frozenset(AcmStatus)
# A failed app is tried again only when refreshed: no attempt runs for it.
TRANSITIONS: dict[AcmStatus, frozenset[AcmStatus]] = {
    AcmStatus.PENDING: _ANY,
    AcmStatus.ISSUED: _ANY,
    AcmStatus.FAILING: _ANY,
    AcmStatus.FAILED: frozenset({AcmStatus.PENDING}),
}


def check_status_change(old: AcmStatus, new: AcmStatus) -> None:
    """Raise ValueError when ACM may not go from ``old`` to ``new``."""
    if new not in TRANSITIONS[old]:
        raise ValueError(f"ACM cannot go from {old} to {new}")


class DueReason(StrEnum):
    """Why an app needs an ACME order now (logged with the attempt)."""

    FIRST = "no certificate yet"
    HOSTS = "the certificate does not cover every host of the app"
    RENEWAL = "the certificate is due for renewal"
    RETRY = "the last attempt failed"


@dataclass(frozen=True)
class RenewalPolicy:
    """The server's ACM settings. ``renew_before``: a fixed time before expiry to renew at
    (None: a third of the lifetime, 30 days at most). ``retry_first``: the delay after a
    first failure, doubling up to ``retry_max``."""

    renew_before: timedelta | None = None
    retry_first: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    max_failures: int = 5


def renewal_policy(renew_before: float | None) -> RenewalPolicy:
    """The server's policy: ``--acme-renew-before`` seconds (None or 0: the default rule)."""
    return RenewalPolicy(renew_before=timedelta(seconds=renew_before) if renew_before else None)


@dataclass(frozen=True)
class AcmRecord:
    """An app's ACM state; the certificate's own PEM lives with the platform's certificates."""

    app_id: str
    status: AcmStatus
    reason: str | None  # why it is failing or failed; None otherwise
    failures: int  # attempts failed in a row
    retry_at: datetime | None  # after a failure: the next attempt, not before
    hosts: tuple[str, ...]  # the names the current certificate covers; () before the first
    not_before: datetime | None
    not_after: datetime | None
    updated_at: datetime


def enabled(app_id: str, now: datetime) -> AcmRecord:
    """The record of an app whose ACM was just enabled."""
    return AcmRecord(app_id, AcmStatus.PENDING, None, 0, None, (), None, None, now)


def normalized_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """The names an order asks for: lower case, without duplicates, sorted."""
    return tuple(sorted({host.lower().rstrip(".") for host in hosts}))


def renewal_time(not_before: datetime, not_after: datetime, policy: RenewalPolicy) -> datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` is renewed."""
    lifetime = not_after - not_before
    before = policy.renew_before
    if before is None:
        before = min(RENEW_AT_LATEST, lifetime / RENEW_FRACTION)
    # A fixed time longer than the lifetime would order again as soon as one is issued:
    # half the lifetime at most.
    before = min(before, lifetime / 2)
    return not_after - max(before, MIN_RENEW_BEFORE)


def due(
    record: AcmRecord, hosts: Iterable[str], now: datetime, policy: RenewalPolicy
) -> DueReason | None:
    """Why ``record``'s app needs an ACME order at ``now`` for ``hosts``, or None."""
    if record.status is AcmStatus.FAILED:
        return None
    if record.retry_at is not None and now < record.retry_at:
        return None
    if record.not_after is None or record.not_before is None or not record.hosts:
        return DueReason.RETRY if record.failures else DueReason.FIRST
    if not set(normalized_hosts(hosts)) <= set(record.hosts):
        return DueReason.HOSTS
    if now >= renewal_time(record.not_before, record.not_after, policy):
        return DueReason.RENEWAL
    if record.status is AcmStatus.FAILING:  # a failed renewal, retried before the deadline
        return DueReason.RETRY
    return None


def next_check(
    record: AcmRecord, hosts: Iterable[str], now: datetime, policy: RenewalPolicy
) -> datetime | None:
    """When ``record``'s app is next due (``now`` if it is), None if it never is unasked."""
    if due(record, hosts, now, policy) is not None:
        return now
    if record.status is AcmStatus.FAILED:
        return None
    if record.retry_at is not None and now < record.retry_at:
        return record.retry_at
    if record.not_before is None or record.not_after is None:
        return None
    return renewal_time(record.not_before, record.not_after, policy)


def issued(
    record: AcmRecord,
    hosts: Iterable[str],
    not_before: datetime,
    not_after: datetime,
    now: datetime,
) -> AcmRecord:
    """The record once a certificate for ``hosts`` was obtained."""
    check_status_change(record.status, AcmStatus.ISSUED)
    return replace(
        record,
        status=AcmStatus.ISSUED,
        reason=None,
        failures=0,
        retry_at=None,
        hosts=normalized_hosts(hosts),
        not_before=not_before,
        not_after=not_after,
        updated_at=now,
    )


def failed_attempt(
    record: AcmRecord, reason: str, now: datetime, policy: RenewalPolicy
) -> AcmRecord:
    """The record once an attempt failed for ``reason``: failing, retried later, or failed."""
    failures = record.failures + 1
    status = AcmStatus.FAILED if failures >= policy.max_failures else AcmStatus.FAILING
    check_status_change(record.status, status)
    delay = min(policy.retry_first * 2 ** (failures - 1), policy.retry_max)
    return replace(
        record,
        status=status,
        reason=reason,
        failures=failures,
        retry_at=None if status is AcmStatus.FAILED else now + delay,
        updated_at=now,
    )


def refreshed(record: AcmRecord, now: datetime) -> AcmRecord:
    """``certs:auto:refresh``: an order is due at once, failures forgotten. The current
    certificate stays served until a new one replaces it."""
    check_status_change(record.status, AcmStatus.PENDING)
    return replace(
        record,
        status=AcmStatus.PENDING,
        reason=None,
        failures=0,
        retry_at=None,
        hosts=(),  # due at once, whatever its dates
        updated_at=now,
    )


def domain_status(record: AcmRecord | None, hostname: str) -> tuple[str | None, str | None]:
    """``(acm_status, acm_status_reason)`` of one of the app's hosts; (None, None) when ACM
    is off."""
    if record is None:
        return None, None
    if record.status is AcmStatus.ISSUED:
        if hostname.lower() in record.hosts:
            return str(AcmStatus.ISSUED), None
        return str(AcmStatus.PENDING), None
    return str(record.status), record.reason
