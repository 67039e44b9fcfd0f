"""core/drain_frames.py: Heroku's RFC 5424 messages, octet-counted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynos.core.drain_frames import (
    Overflow,
    frame,
    line_frame,
    lines_frames,
    overflow_frame,
    read_frames,
)

AT = datetime(2026, 12, 2, 3, 50, 0, 123456, tzinfo=UTC)


def test_an_app_line_as_heroku_sends_it() -> None:
    message = b"<190>1 2026-12-02T03:50:00.123456+00:00 host app web.1 - Hello there"
    assert line_frame(AT, "app", "web.1", "Hello there", "host") == b"%d %s" % (
        len(message),
        message,
    )


def test_router_and_platform_priorities_and_a_syslog_token_hostname() -> None:
    router = line_frame(AT, "dynos", "router", "at=info", "d.abc")
    assert router.split(b" ", 1)[1].startswith(b"<158>1 2026-12-02T03:50:00.123456+00:00 d.abc ")
    assert b" dynos router - at=info" in router
    platform = line_frame(AT, "dynos", "web.1", "State changed", "host")
    assert b"<45>1 " in platform


def test_length_counts_utf8_bytes_not_characters() -> None:
    framed = frame("héllo ✓")
    count, rest = framed.split(b" ", 1)
    assert int(count) == len(rest) == len("héllo ✓".encode())


def test_header_fields_are_printable_ascii_and_never_empty() -> None:
    framed = line_frame(AT, "app", "we b\x00", "x", "")
    assert b" - app web - x" in framed


def test_the_l10_line_is_herokus() -> None:
    overflow = Overflow(13, datetime(2026, 12, 2, 3, 49, tzinfo=UTC), AT)
    assert overflow.message() == (
        "Error L10 (output buffer overflow): 13 messages dropped since "
        "2026-12-02T03:49:00.000000+00:00."
    )
    framed = overflow_frame(overflow, "host", "dynos")
    assert b"<172>1 2026-12-02T03:50:00.123456+00:00 host dynos logplex - Error L10" in framed


def test_read_frames_back_to_back_and_a_partial_tail() -> None:
    data = frame("one") + frame("two words") + b"12 <19"
    messages, rest = read_frames(data)
    assert messages == [b"one", b"two words"]
    assert rest == b"12 <19"
    assert read_frames(b"5") == ([], b"5")


@pytest.mark.parametrize("data", [b"x3 abc", b"03 abc", b"123456789012345 a"])
def test_read_frames_refuses_what_is_no_frame(data: bytes) -> None:
    with pytest.raises(ValueError, match="octet-counted"):
        read_frames(data)


def test_a_batch_of_lines_is_their_frames_back_to_back() -> None:
    later = AT.replace(second=1)
    lines = [(AT, "app", "web.1", "a"), (AT, "dynos", "router", "b"), (later, "app", "web.2", "c")]
    assert lines_frames(lines, "d.tok") == b"".join(line_frame(*line, "d.tok") for line in lines)
