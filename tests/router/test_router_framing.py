"""HTTP/1.1 framing helpers (pure functions)."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynos.router.http import (
    LAST_CHUNK,
    BodyKind,
    Headers,
    chunk,
    chunked_size,
    request_body_kind,
    response_body_kind,
    simple_response,
)


class Collect:
    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


@given(st.lists(st.binary(min_size=1, max_size=3000), max_size=20))
def test_chunks_read_back_as_the_same_body(pieces: list[bytes]) -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        framed = b"".join(chunk(piece))
        assert len(framed) == chunked_size(len(piece))
        wire += framed
    wire += LAST_CHUNK
    collect = Collect()
    httptools.HttpResponseParser(collect).feed_data(wire)
    assert collect.complete
    assert collect.body == b"".join(pieces)


CL: Headers = [(b"Content-Length", b"5")]
TE: Headers = [(b"Transfer-Encoding", b"chunked")]


@pytest.mark.parametrize(
    ("status", "head_request", "headers", "kind"),
    [
        (200, False, CL, BodyKind.LENGTH),
        (200, False, TE, BodyKind.CHUNKED),
        (200, False, [(b"transfer-encoding", b"gzip, Chunked")], BodyKind.CHUNKED),
        (200, False, [(b"Transfer-Encoding", b"gzip")], BodyKind.UNTIL_CLOSE),
        (200, False, [], BodyKind.UNTIL_CLOSE),
        (200, True, CL, BodyKind.NONE),
        (204, False, CL, BodyKind.NONE),
        (304, False, TE, BodyKind.NONE),
        (103, False, [], BodyKind.NONE),
    ],
)
def test_response_body_kind_follows_rfc_9112(
    status: int, head_request: bool, headers: Headers, kind: BodyKind
) -> None:
    assert response_body_kind(status, head_request, headers) is kind


def test_request_body_kind() -> None:
    assert request_body_kind([]) is BodyKind.NONE
    assert request_body_kind(CL) is BodyKind.LENGTH
    assert request_body_kind(TE) is BodyKind.CHUNKED


def test_simple_response_to_head_has_the_length_but_not_the_body() -> None:
    full = simple_response(503, b"<p>down</p>", content_type=b"text/html", close=False)
    head = simple_response(
        503, b"<p>down</p>", content_type=b"text/html", close=False, head_only=True
    )
    assert full == head + b"<p>down</p>"
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nContent-Length: 11\r\n" in head
    assert b"Connection" not in head


def test_simple_response_says_close_when_closing() -> None:
    response = simple_response(400, b"", content_type=b"text/html", close=True)
    assert b"\r\nConnection: close\r\n" in response
