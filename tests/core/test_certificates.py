"""The certificate rules (core/certificates.py): names, coverage, choice, refusals."""

from __future__ import annotations

import datetime

import pytest

from dynos.core.certificates import (
    AppCertificate,
    CertificateFacts,
    ServedCertificate,
    assign,
    check_installable,
    choose,
    covers,
    names_match,
    normalize_host,
    valid_hostname,
    wildcard_useful,
)
from dynos.errors import UserError

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def facts(**changes: object) -> CertificateFacts:
    base: dict[str, object] = {
        "names": ("www.example.com",),
        "not_before": NOW - datetime.timedelta(days=1),
        "not_after": NOW + datetime.timedelta(days=30),
        "key_matches": True,
        "subject": "CN=www.example.com",
        "issuer": "CN=Some CA",
        "self_signed": False,
    }
    base.update(changes)
    return CertificateFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("domain", "useful"),
    [("localhost", False), ("dynos.test", True), ("apps.example.com", True)],
)
def test_a_wildcard_helps_only_below_a_domain_of_two_labels(domain: str, useful: bool) -> None:
    assert wildcard_useful(domain) is useful


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("foo.localhost", "foo.localhost", True),
        ("FOO.localhost", "foo.localhost", True),
        ("*.dynos.test", "foo.dynos.test", True),
        ("*.dynos.test", "a.b.dynos.test", False),  # one label only
        ("*.dynos.test", "dynos.test", False),
        ("*.localhost", "foo.localhost", False),  # clients refuse it: so do we
        ("foo.localhost", "bar.localhost", False),
    ],
)
def test_names_match_as_tls_clients_match_them(pattern: str, host: str, matches: bool) -> None:
    assert names_match(pattern, host) is matches


def test_host_names_are_checked_and_normalized() -> None:
    assert valid_hostname("www.example.com")
    assert not valid_hostname("-bad.example.com")
    assert not valid_hostname("a" * 64 + ".com")
    assert not valid_hostname("")
    assert normalize_host("Foo.LocalHost:5443") == "foo.localhost"
    assert normalize_host("foo.localhost.") == "foo.localhost"


def test_a_matching_valid_certificate_is_installable() -> None:
    check_installable(facts(), NOW, ["www.example.com"])
    check_installable(facts(names=("*.example.com",)), NOW, ["www.example.com"])


def test_a_key_that_does_not_match_is_refused() -> None:
    with pytest.raises(UserError, match="private key does not match"):
        check_installable(facts(key_matches=False), NOW, ["www.example.com"])


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ({"key_type": "RSA", "key_size": 2048}, True),
        ({"key_type": "RSA", "key_size": 3072}, True),
        ({"key_type": "RSA", "key_size": 4096}, True),
        ({"key_type": "EC", "key_size": 256, "key_curve": "secp256r1"}, True),
        ({"key_type": "EC", "key_size": 384, "key_curve": "secp384r1"}, True),
        ({"key_type": "RSA", "key_size": 1024}, False),
        ({"key_type": "RSA", "key_size": 16384}, False),
        ({"key_type": "EC", "key_size": 521, "key_curve": "secp521r1"}, False),
        ({"key_type": "Ed25519", "key_size": 0}, False),
    ],
)
def test_only_rsa_2048_to_4096_and_ec_p256_or_p384_keys_are_installable(
    key: dict[str, object], accepted: bool
) -> None:
    if accepted:
        check_installable(facts(**key), NOW, ["www.example.com"])
        return
    with pytest.raises(UserError, match=r"only RSA keys of 2048 to 4096 bits, or EC .* P-384"):
        check_installable(facts(**key, key_matches=False), NOW, ["www.example.com"])


def test_an_expired_certificate_is_refused() -> None:
    with pytest.raises(UserError, match="expired"):
        check_installable(facts(not_after=NOW - datetime.timedelta(seconds=1)), NOW, [])


def test_a_certificate_not_yet_valid_is_refused() -> None:
    with pytest.raises(UserError, match="not valid before"):
        check_installable(facts(not_before=NOW + datetime.timedelta(days=1)), NOW, [])


def test_a_certificate_that_covers_none_of_the_apps_domains_is_refused_naming_them() -> None:
    with pytest.raises(UserError, match=r"covers none of the app's domains \(foo\.localhost, "):
        check_installable(facts(), NOW, ["foo.localhost", "api.example.com"])
    # One of them is enough: it serves that one, the platform's the others.
    check_installable(facts(), NOW, ["foo.localhost", "www.example.com", "api.example.com"])


def test_a_replacement_must_cover_the_domains_that_chose_the_certificate() -> None:
    hosts = ["foo.localhost", "www.example.com", "api.example.com"]
    with pytest.raises(UserError, match=r"does not cover api\.example\.com .*domains:update"):
        check_installable(facts(), NOW, hosts, pinned=["www.example.com", "api.example.com"])
    check_installable(facts(), NOW, hosts, pinned=["www.example.com"])


def test_own_certificates_come_before_issued_ones_and_exact_names_before_wildcards() -> None:
    issued = ServedCertificate(("foo.dynos.test",), "issued.pem", "issued.key", own=False)
    wildcard = ServedCertificate(("*.dynos.test",), "wild.pem", "wild.key", own=False)
    own = ServedCertificate(("foo.dynos.test",), "own.pem", "own.key", own=True)
    own_wildcard = ServedCertificate(("*.dynos.test",), "ownw.pem", "ownw.key", own=True)
    assert choose([wildcard, issued], "foo.dynos.test") is issued
    assert choose([issued, own], "foo.dynos.test") is own
    assert choose([issued, own_wildcard], "foo.dynos.test") is own_wildcard
    assert choose([issued, wildcard], "bar.dynos.test") is wildcard
    assert choose([issued], "bar.dynos.test") is None
    assert covers(["*.dynos.test"], "bar.dynos.test")


def cert(id: str, *names: str, acm: bool = False, days_ago: int = 0) -> AppCertificate:
    return AppCertificate(id, names, acm, NOW - datetime.timedelta(days=days_ago))


HOSTS = ["foo.localhost", "www.example.com", "api.example.com", "shop.example.org"]


def test_each_host_gets_the_newest_certificate_naming_it_exactly_then_a_wildcard() -> None:
    old = cert("old", "www.example.com", "api.example.com", days_ago=3)
    new = cert("new", "www.example.com", days_ago=1)
    wild = cert("wild", "*.example.com")
    chosen = assign(HOSTS, [old, new, wild], {})
    # shop.example.org and foo.localhost: none covers them, the platform's serves them.
    assert chosen == {"www.example.com": "new", "api.example.com": "old"}
    assert assign(HOSTS, [wild], {}) == {"www.example.com": "wild", "api.example.com": "wild"}


def test_a_domains_choice_comes_first_while_it_covers_the_domain() -> None:
    old = cert("old", "www.example.com", days_ago=3)
    new = cert("new", "www.example.com", days_ago=1)
    assert assign(HOSTS, [old, new], {"www.example.com": "old"})["www.example.com"] == "old"
    # A choice of a certificate that is gone, or no longer covers it: the rule again.
    assert assign(HOSTS, [new], {"www.example.com": "old"}) == {"www.example.com": "new"}
    other = cert("old", "shop.example.org")
    assert assign(HOSTS, [other, new], {"www.example.com": "old"})["www.example.com"] == "new"


def test_acms_certificate_serves_every_host_it_covers() -> None:
    own = cert("own", "www.example.com", "foo.localhost", days_ago=0)
    acm = cert("acm", "foo.localhost", "www.example.com", acm=True, days_ago=5)
    chosen = assign(HOSTS, [own, acm], {"www.example.com": "own"})
    assert chosen == {"foo.localhost": "acm", "www.example.com": "acm"}
    # A domain added since ACM's last order: the app's own serves it meanwhile.
    late = cert("own2", "api.example.com")
    assert assign(HOSTS, [acm, late], {})["api.example.com"] == "own2"


def test_only_the_apps_hosts_are_assigned_whatever_the_certificate_names() -> None:
    greedy = cert("greedy", "foo.localhost", "bar.localhost", "*.example.net")
    assert assign(["foo.localhost"], [greedy], {}) == {"foo.localhost": "greedy"}
