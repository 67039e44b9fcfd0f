"""Reading the token out of an Authorization header, as Heroku clients send it."""

from __future__ import annotations

import base64

from dynos.api.auth import credential


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_bearer_token_is_the_credential() -> None:
    assert credential(b"Bearer abc123") == b"abc123"


def test_scheme_is_case_insensitive() -> None:
    assert credential(b"bearer abc123") == b"abc123"


def test_basic_password_is_the_credential_whatever_the_user() -> None:
    assert credential(basic("me@example.com", "abc123")) == b"abc123"
    assert credential(basic("", "abc123")) == b"abc123"


def test_malformed_basic_has_no_credential() -> None:
    assert credential(b"Basic not-base64!") is None


def test_other_schemes_have_no_credential() -> None:
    assert credential(b"Token abc123") is None
    assert credential(b"") is None
