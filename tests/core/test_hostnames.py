"""Which hostnames may become an app's custom domain, and their one spelling (pure)."""

from __future__ import annotations

import pytest

from dynos.core.hostnames import MAX_HOSTNAME, lookup_key, parse_hostname
from dynos.errors import UserError


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("www.example.com", "www.example.com"),
        ("example.com", "example.com"),
        ("WWW.Example.COM", "www.example.com"),  # DNS names are case-insensitive
        ("www.example.com.", "www.example.com"),  # the root's dot names the same host
        ("a-b.x1.example.co.uk", "a-b.x1.example.co.uk"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # IDNs in their ASCII form
        ("3com.com", "3com.com"),  # RFC 1123 lets a label start with a digit
        ("app.localhost.example", "app.localhost.example"),
        (f"{'a' * 63}.example.com", f"{'a' * 63}.example.com"),
    ],
)
def test_a_valid_hostname_is_kept_lowercase_without_the_trailing_dot(given: str, kept: str) -> None:
    assert parse_hostname(given, "localhost") == kept


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("", "needs a hostname"),
        (None, "needs a hostname"),
        (42, "needs a hostname"),
        (["www.example.com"], "needs a hostname"),
        ("*.example.com", "Wildcard"),
        ("www.*.example.com", "Wildcard"),
        ("https://www.example.com", "without a scheme"),
        ("www.example.com:443", "without a scheme"),
        ("www.example.com/path", "without a scheme"),
        ("user@www.example.com", "without a scheme"),
        ("www.example.com\n", "without a scheme"),
        (" www.example.com", "without a scheme"),
        ("[::1]", "without a scheme"),
        ("-www.example.com", "RFC 1123"),
        ("www-.example.com", "RFC 1123"),
        ("www..example.com", "RFC 1123"),
        (".example.com", "RFC 1123"),
        ("www_1.example.com", "RFC 1123"),
        ("bücher.example", "RFC 1123"),
        (f"{'a' * 64}.example.com", "RFC 1123"),
        (".".join(["a" * 60] * 5), "253 characters"),
        ("intranet", "full name with a dot"),
        ("127.0.0.1", "IP address"),
        ("10.1.2.3", "IP address"),
        ("localhost", "platform's own domain"),
        ("shop.localhost", "platform's own domain"),
        ("git.localhost", "platform's own domain"),
        ("a.b.LOCALHOST.", "platform's own domain"),
    ],
)
def test_anything_else_is_refused_saying_why(given: object, said: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_hostname(given, "localhost")
    assert said in raised.value.message


def test_names_under_another_platform_domain_are_refused_and_the_rest_allowed() -> None:
    with pytest.raises(UserError, match=r"own domain dynos\.example\.org"):
        parse_hostname("other-app.dynos.example.org", "dynos.example.org")
    with pytest.raises(UserError, match="own domain"):
        parse_hostname("dynos.example.org", "Dynos.Example.org")
    # A sibling, or a name that merely ends with the same letters, is somebody's domain.
    assert parse_hostname("www.example.org", "dynos.example.org") == "www.example.org"
    assert parse_hostname("notdynos.example.org", "dynos.example.org") == "notdynos.example.org"
    assert parse_hostname("shop.localhost", "dynos.example.org") == "shop.localhost"


def test_a_long_input_is_quoted_back_cut_short() -> None:
    given = "x" * 5000 + ".example.com"
    with pytest.raises(UserError) as raised:
        parse_hostname(given, "localhost")
    assert len(raised.value.message) < 300
    assert MAX_HOSTNAME == 253


def test_a_domain_is_looked_up_by_the_stored_spelling() -> None:
    assert lookup_key("WWW.Example.com.") == "www.example.com"
    assert lookup_key("5b0e0a4c-uuid") == "5b0e0a4c-uuid"
