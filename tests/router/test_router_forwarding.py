"""What the router adds to and removes from requests and responses (pure functions)."""

from __future__ import annotations

import uuid

import pytest

from dynos.router.client import RequestIds
from dynos.router.forwarding import (
    ROUTER_REQUEST_HEADERS,
    UNREMOVABLE_REQUEST,
    MalformedRequest,
    forward_request,
    forward_response_head,
    valid_request_id,
)
from dynos.router.http import BodyKind, Headers


def forward(headers: Headers, method: bytes = b"GET") -> tuple[Headers, str]:
    """The dyno's request headers (as pairs) and the request id, for ``headers``."""
    fwd = forward_request(
        method,
        b"/path?q=1",
        headers,
        client_ip="198.51.100.4",
        router_port=5000,
        request_start_ms=1_700_000_000_123,
        new_request_id=lambda: "new-id",
    )
    lines = fwd.head.decode("latin-1").split("\r\n")
    assert lines[0] == f"{method.decode()} /path?q=1 HTTP/1.1"
    assert lines[-2:] == ["", ""]
    pairs = [line.split(": ", 1) for line in lines[1:-2]]
    return [(k.encode(), v.encode()) for k, v in pairs], fwd.request_id


def value(headers: Headers, name: bytes) -> bytes | None:
    found = [v for k, v in headers if k.lower() == name.lower()]
    assert len(found) <= 1, f"{name!r} sent more than once"
    return found[0] if found else None


def test_router_headers_are_added() -> None:
    headers, _ = forward([(b"Host", b"foo.localhost")])
    assert value(headers, b"X-Forwarded-For") == b"198.51.100.4"
    assert value(headers, b"X-Forwarded-Proto") == b"http"
    assert value(headers, b"X-Forwarded-Port") == b"5000"
    assert value(headers, b"X-Request-Start") == b"1700000000123"
    assert value(headers, b"Via") == b"1.1 dynos"
    assert value(headers, b"Host") == b"foo.localhost"


def test_client_values_of_router_set_headers_are_dropped() -> None:
    headers, _ = forward(
        [
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-Port", b"443"),
            (b"X-Request-Start", b"1"),
        ]
    )
    assert value(headers, b"X-Forwarded-Proto") == b"http"
    assert value(headers, b"X-Forwarded-Port") == b"5000"
    assert value(headers, b"X-Request-Start") == b"1700000000123"


# Other headers frameworks read for the scheme or the client's address: Rack's ``ssl?`` reads
# X-Forwarded-Ssl before X-Forwarded-Proto, Rack 2 X-Forwarded-Scheme, Rack 3 Forwarded first.
FORGED_CLAIMS: Headers = [
    (b"X-Forwarded-Ssl", b"on"),
    (b"X-Forwarded-Scheme", b"https"),
    (b"Forwarded", b"proto=https;for=6.6.6.6"),
    (b"forwarded", b"for=6.6.6.6"),
    (b"FORWARDED", b"proto=https"),
]


@pytest.mark.parametrize("forged", FORGED_CLAIMS, ids=lambda h: h[0].decode())
def test_other_claims_of_scheme_or_address_are_dropped(forged: tuple[bytes, bytes]) -> None:
    headers, _ = forward([(b"Host", b"foo.localhost"), forged, (b"X-Public", b"1")])
    assert value(headers, forged[0]) is None
    assert value(headers, b"X-Forwarded-Proto") == b"http"
    assert value(headers, b"X-Public") == b"1"


# Servers that turn names into CGI variables (HTTP_X_FORWARDED_PROTO: gunicorn before 22,
# uWSGI, PHP) merge these with the router's header, and Django takes the first value.
UNDERSCORED: Headers = [
    (b"X_Forwarded_Proto", b"https"),
    (b"x_forwarded_proto", b"https"),
    (b"X-Forwarded_Proto", b"https"),
    (b"X_Forwarded-Port", b"443"),
    (b"X_FORWARDED_FOR", b"6.6.6.6"),
    (b"X_Request_Start", b"1"),
    (b"X_Request_Id", b"r" * 24),
    (b"X_Forwarded_Ssl", b"on"),
    (b"X_Forwarded_Scheme", b"https"),
]


@pytest.mark.parametrize("forged", UNDERSCORED, ids=lambda h: h[0].decode())
def test_underscore_spellings_of_router_and_scheme_headers_are_dropped(
    forged: tuple[bytes, bytes],
) -> None:
    headers, request_id = forward([forged, (b"X_Custom_Header", b"kept")])
    assert [k for k, _ in headers if b"_" in k] == [b"X_Custom_Header"]
    assert value(headers, b"X-Forwarded-Proto") == b"http"
    assert value(headers, b"X-Forwarded-For") == b"198.51.100.4"
    assert request_id == "new-id"


def test_forwarded_host_is_passed_on_as_heroku_does() -> None:
    # The router never writes it, and the Host header still routes the request (forwarding.py).
    headers, _ = forward([(b"X-Forwarded-Host", b"www.example.com")])
    assert value(headers, b"X-Forwarded-Host") == b"www.example.com"


def test_every_incoming_forwarded_for_is_kept_in_order() -> None:
    headers, _ = forward([(b"X-Forwarded-For", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2")])
    assert value(headers, b"X-Forwarded-For") == b"10.0.0.1, 10.0.0.2, 198.51.100.4"


def test_hop_by_hop_and_connection_listed_headers_are_removed() -> None:
    headers, _ = forward(
        [
            (b"Connection", b"keep-alive, X-Private"),
            (b"X-Private", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"TE", b"trailers"),
            (b"Upgrade", b"h2c"),
            (b"Proxy-Authorization", b"Basic eA=="),
            (b"X-Public", b"2"),
        ]
    )
    names = {k.lower() for k, _ in headers}
    assert b"x-public" in names
    hop = {b"connection", b"x-private", b"keep-alive", b"te", b"upgrade", b"proxy-authorization"}
    assert names.isdisjoint(hop)


def test_chunked_request_is_announced_chunked_once() -> None:
    headers, _ = forward([(b"Transfer-Encoding", b"chunked")], method=b"POST")
    assert value(headers, b"Transfer-Encoding") == b"chunked"


def test_content_length_is_kept_and_body_kind_follows_it() -> None:
    fwd = forward_request(
        b"POST",
        b"/",
        [(b"Content-Length", b"12")],
        client_ip="::1",
        router_port=80,
        request_start_ms=0,
        new_request_id=lambda: "x",
    )
    assert b"\r\nContent-Length: 12\r\n" in fwd.head
    assert fwd.body is BodyKind.LENGTH


# ---- what a Connection header may not remove (issue 11) ----------------------------------------

CLIENT_HEADERS: Headers = [
    (b"Host", b"foo.localhost"),
    (b"Content-Length", b"12"),
    (b"X-Request-Id", b"r" * 24),
    (b"X-Forwarded-For", b"203.0.113.1"),
    (b"Via", b"1.0 cdn"),
]


@pytest.mark.parametrize("name", sorted(UNREMOVABLE_REQUEST | ROUTER_REQUEST_HEADERS))
def test_no_name_in_connection_removes_framing_routing_or_router_headers(name: bytes) -> None:
    plain, _ = forward(CLIENT_HEADERS, method=b"POST")
    for spelling in (name, name.upper(), b"close, " + name + b" , x-other"):
        headers, _ = forward([*CLIENT_HEADERS, (b"Connection", spelling)], method=b"POST")
        assert headers == plain, spelling
    assert value(plain, b"Host") == b"foo.localhost"
    assert value(plain, b"Content-Length") == b"12"
    assert value(plain, b"X-Request-Id") == b"r" * 24
    assert value(plain, b"X-Forwarded-For") == b"203.0.113.1, 198.51.100.4"
    assert value(plain, b"Via") == b"1.0 cdn, 1.1 dynos"


def test_the_router_writes_every_header_it_protects_itself() -> None:
    # The names the router writes (forwarding.py's tail and framing) are all protected.
    headers, _ = forward(CLIENT_HEADERS, method=b"POST")
    written = {k.lower() for k, _ in headers} - {b"host"}
    assert written <= ROUTER_REQUEST_HEADERS


def test_content_length_is_written_from_the_number_parsed() -> None:
    headers, _ = forward([(b"Content-Length", b"012 ")], method=b"POST")
    assert value(headers, b"Content-Length") == b"12"


@pytest.mark.parametrize(
    "framing",
    [
        [(b"Content-Length", b"3"), (b"Content-Length", b"3")],
        [(b"Content-Length", b"3"), (b"Content-Length", b"4")],
        [(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"3")],
        [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"gzip, chunked")],
        [(b"Content-Length", b"+3")],
        [(b"Content-Length", b"3, 3")],
        [(b"Content-Length", b"")],
        [(b"Content-Length", b"0x3")],
        [(b"Content-Length", b"9" * 19)],
    ],
)
def test_framing_that_could_be_read_two_ways_is_refused(framing: Headers) -> None:
    with pytest.raises(MalformedRequest):
        forward(framing, method=b"POST")


def test_a_dyno_cannot_remove_its_response_framing_through_connection() -> None:
    head = forward_response_head(
        200,
        b"OK",
        [
            (b"Connection", b"content-length, transfer-encoding, via, x-hop"),
            (b"Content-Length", b"2"),
            (b"X-Hop", b"1"),
            (b"Via", b"1.1 app"),
        ],
        chunked=False,
        keep_alive=True,
        http10_client=False,
    )
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 app, 1.1 dynos\r\n\r\n"


@pytest.mark.parametrize(
    ("request_id", "kept"),
    [
        ("a" * 20, True),
        ("a" * 200, True),
        ("Ab0+/=-" * 5, True),
        ("a" * 19, False),
        ("a" * 201, False),
        ("has space" * 3, False),
        ("semi;colon" * 3, False),
        ("", False),
    ],
)
def test_incoming_request_id_is_kept_only_when_valid(request_id: str, kept: bool) -> None:
    headers, chosen = forward([(b"X-Request-Id", request_id.encode())])
    assert valid_request_id(request_id.encode()) is kept
    assert chosen == (request_id if kept else "new-id")
    assert value(headers, b"X-Request-Id") == chosen.encode()


def test_response_head_drops_hop_by_hop_and_says_close_when_closing() -> None:
    head = forward_response_head(
        200,
        b"OK",
        [
            (b"Content-Type", b"text/plain"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Via", b"1.1 vegur"),
        ],
        chunked=True,
        keep_alive=False,
        http10_client=False,
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 vegur, 1.1 dynos\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )


def test_response_head_tells_an_http10_client_it_is_kept_alive() -> None:
    head = forward_response_head(200, b"OK", [], chunked=False, keep_alive=True, http10_client=True)
    assert head.endswith(b"\r\nConnection: keep-alive\r\n\r\n")


def test_interim_response_head_has_no_connection_header() -> None:
    head = forward_response_head(
        100, b"Continue", [], chunked=False, keep_alive=False, http10_client=False
    )
    assert head == b"HTTP/1.1 100 Continue\r\nVia: 1.1 dynos\r\n\r\n"


def test_new_request_ids_are_version_4_uuids_that_never_repeat() -> None:
    ids = RequestIds()
    made = [ids.new() for _ in range(100_000)]
    assert len(set(made)) == len(made)
    for made_id in made[:100] + made[-100:]:
        parsed = uuid.UUID(made_id)
        assert str(parsed) == made_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert valid_request_id(made_id.encode())


def test_request_ids_keep_their_form_where_the_sequence_wraps() -> None:
    ids = RequestIds()
    ids.sequence = 0x3FFF_FFFF_FFFF_FFFE
    last, first = ids.new(), ids.new()
    assert last.endswith("-bfff-ffffffffffff")
    assert first.endswith("-8000-000000000000")
    assert uuid.UUID(first).variant == uuid.RFC_4122


def test_each_router_process_has_its_own_random_part() -> None:
    assert RequestIds().prefix != RequestIds().prefix  # 60 random bits each
