"""The router's log line, in Heroku's format (pure function)."""

from __future__ import annotations

from dynos.router.errors import H14, ROUTER_ERRORS
from dynos.router.request_log import request_line


def test_info_line_has_every_field_in_herokus_order() -> None:
    line = request_line(
        method="GET",
        path="/",
        host="foo.localhost",
        request_id="0b1a7f4e-6c2d-4e0b-9a55-2f9d2c0e8d11",
        fwd="127.0.0.1",
        dyno="web.1",
        connect_ms=0,
        service_ms=12,
        status=200,
        bytes_sent=1234,
    )
    assert line == (
        'at=info method=GET path="/" host=foo.localhost '
        'request_id=0b1a7f4e-6c2d-4e0b-9a55-2f9d2c0e8d11 fwd="127.0.0.1" dyno=web.1 '
        "connect=0ms service=12ms status=200 bytes=1234 protocol=http"
    )


def test_error_line_leaves_unknown_fields_empty() -> None:
    line = request_line(
        method="GET",
        path="/",
        host="foo.localhost",
        request_id="abc",
        fwd="127.0.0.1",
        dyno="",
        connect_ms=None,
        service_ms=None,
        status=503,
        bytes_sent=None,
        error=H14,
    )
    assert line == (
        'at=error code=H14 desc="No web processes running" method=GET path="/" '
        'host=foo.localhost request_id=abc fwd="127.0.0.1" dyno= connect= service= '
        "status=503 bytes= protocol=http"
    )


def test_quotes_a_client_sends_cannot_end_a_quoted_field_early() -> None:
    line = request_line(
        method="GET",
        path='/a"b',
        host="foo.localhost",
        request_id="abc",
        fwd='1.2.3.4" evil="yes',
        dyno="web.1",
        connect_ms=1,
        service_ms=2,
        status=200,
        bytes_sent=3,
    )
    assert 'path="/a\\"b"' in line
    assert 'fwd="1.2.3.4\\" evil=\\"yes"' in line


def test_error_table_keeps_herokus_codes_and_statuses() -> None:
    assert {code: (e.status, e.desc) for code, e in ROUTER_ERRORS.items()} == {
        "H10": (503, "App crashed"),
        "H12": (503, "Request timeout"),
        "H13": (503, "Connection closed without response"),
        "H14": (503, "No web processes running"),
        "H17": (503, "Poorly formatted HTTP response"),
        "H18": (503, "Server Request Interrupted"),
        "H19": (503, "Backend connection timeout"),
        "H20": (503, "App boot timeout"),
        "H21": (503, "Backend connection refused"),
        "H27": (499, "Client Request Interrupted"),
        "H99": (503, "Platform error"),
    }
