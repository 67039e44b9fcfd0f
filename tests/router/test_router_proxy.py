"""The router end to end: real sockets, fake dynos, on asyncio's and uvloop's event loops."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time

import h11
import pytest

from tests.router.router_harness import (
    APP,
    HOST,
    PATTERN,
    UUID,
    WireClient,
    answer_without_dynos,
    client,
    dead_endpoint,
    fake_dynos,
    first_arrival,
    one_dyno,
    raw_exchange,
    running_router,
    table_with,
)

pytestmark = pytest.mark.anyio

# ---- what the dyno receives -------------------------------------------------------------


async def test_get_reaches_the_dyno_with_heroku_headers_added() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        before = int(time.time() * 1000)
        async with client(r.port) as http:
            response = await http.get("/hello?x=1", headers={"X-Custom": "yes"})
        after = int(time.time() * 1000)

    assert response.status_code == 200
    assert response.json()["path"] == "/hello?x=1"
    assert response.headers["via"] == "1.1 dynos"
    got = dyno.requests[0]
    assert (got.method, got.path) == ("GET", "/hello?x=1")
    assert got.header("Host") == HOST
    assert got.header("X-Custom") == "yes"
    assert got.header("X-Forwarded-For") == "127.0.0.1"
    assert got.header("X-Forwarded-Proto") == "http"
    assert got.header("X-Forwarded-Port") == str(r.port)
    assert got.header("Via") == "1.1 dynos"
    assert before <= int(got.header("X-Request-Start") or 0) <= after
    assert re.fullmatch(UUID, got.header("X-Request-Id") or "")


async def test_valid_incoming_request_id_is_kept() -> None:
    request_id = "Abc123+/=-" * 3

    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        async with client(r.port) as http:
            await http.get("/", headers={"X-Request-Id": request_id})
        assert f"request_id={request_id} " in r.router_lines(APP)[0]
    assert dyno.requests[0].header("X-Request-Id") == request_id


async def test_too_short_request_id_is_replaced_by_a_new_uuid() -> None:
    async with one_dyno() as (dyno, _, http):
        await http.get("/", headers={"X-Request-Id": "short-id"})
    assert re.fullmatch(UUID, dyno.requests[0].header("X-Request-Id") or "")


async def test_client_address_is_appended_to_incoming_forwarded_for() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        async with client(r.port) as http:
            await http.get("/", headers={"X-Forwarded-For": "203.0.113.7"})
        assert 'fwd="203.0.113.7, 127.0.0.1"' in r.router_lines(APP)[0]
    assert dyno.requests[0].header("X-Forwarded-For") == "203.0.113.7, 127.0.0.1"


async def test_client_cannot_claim_https_through_forwarded_proto() -> None:
    async with one_dyno() as (dyno, _, http):
        await http.get("/", headers={"X-Forwarded-Proto": "https"})
    assert dyno.requests[0].header("X-Forwarded-Proto") == "http"


@pytest.mark.parametrize(
    ("name", "forged"),
    [
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Scheme", "https"),
        ("Forwarded", "proto=https;for=6.6.6.6"),
        ("X_Forwarded_Proto", "https"),
        ("X_Forwarded_Port", "443"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("X_Request_Start", "1"),
        ("X_Request_Id", "r" * 24),
        ("X_Forwarded_Ssl", "on"),
        ("X_Forwarded_Scheme", "https"),
    ],
)
async def test_client_cannot_claim_https_or_an_address_through_other_headers(
    name: str, forged: str
) -> None:
    async with one_dyno() as (dyno, _, http):
        await http.get("/", headers={name: forged, "X-Forwarded-Host": "www.example.com"})
    got = dyno.requests[0]
    assert got.header(name) is None
    assert got.header("X-Forwarded-Proto") == "http"
    assert got.header("X-Forwarded-For") == "127.0.0.1"
    assert got.header("X-Forwarded-Host") == "www.example.com"  # as on Heroku: passed on


async def test_hop_by_hop_headers_are_not_forwarded() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
        WireClient.connect(r.port) as wire,
    ):
        headers = [
            ("Host", HOST),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "for the router only"),
            ("Keep-Alive", "timeout=5"),
            ("X-End", "for the dyno"),
        ]
        response = await wire.request("GET", "/", headers)
    assert response.status == 200
    names = {name.lower() for name, _ in dyno.requests[0].headers}
    assert "x-end" in names
    assert names.isdisjoint({"connection", "x-hop", "keep-alive"})
    # the dyno's own "Connection: keep-alive" is not passed back either
    assert "connection" not in response.headers


# ---- balancing --------------------------------------------------------------------------


async def test_requests_are_spread_over_both_dynos() -> None:
    async with fake_dynos("web.1", "web.2") as dynos:
        table = table_with(APP, [d.endpoint for d in dynos])
        async with running_router(table) as r, client(r.port) as http:
            served = [(await http.get("/")).json()["dyno"] for _ in range(40)]
    assert set(served) == {"web.1", "web.2"}


async def test_requests_avoid_the_dyno_that_has_one_in_flight() -> None:
    async with fake_dynos("web.1", "web.2") as dynos:
        table = table_with(APP, [d.endpoint for d in dynos])
        async with running_router(table) as r, client(r.port) as http:
            slow = asyncio.create_task(http.get("/slow"))  # in flight until released
            busy = await first_arrival(dynos)
            served = {(await http.get("/")).json()["dyno"] for _ in range(10)}
            busy.release.set()
            assert (await slow).status_code == 200
    assert served == {"web.1", "web.2"} - {busy.name}


async def test_refused_dyno_is_skipped_for_the_next_one() -> None:
    async with fake_dynos("web.2") as [live]:
        table = table_with(APP, [dead_endpoint("web.1"), live.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            response = await http.get("/")
    assert response.status_code == 200
    assert response.json()["dyno"] == "web.2"


# ---- bodies -----------------------------------------------------------------------------


async def test_one_megabyte_post_body_arrives_whole() -> None:
    body = os.urandom(1024 * 1024)

    async with one_dyno() as (dyno, _, http):
        response = await http.post("/upload", content=body)
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["body_size"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert dyno.requests[0].header("Content-Length") == str(len(body))


async def test_request_body_reaches_the_dyno_before_the_client_has_sent_all_of_it() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        head = b"POST /first-bytes/5 HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n"
        writer.write(head % HOST.encode() + b"start")  # the other 999995 bytes never come
        received = await reader.read(-1)  # the dyno answers; the router then closes
        writer.close()
        await writer.wait_closed()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in received
    assert received.endswith(b"\r\n\r\nstart")
    assert dyno.requests[0].body == b"start"


async def test_chunked_request_body_is_forwarded_chunked() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
        WireClient.connect(r.port) as wire,
    ):
        headers = [("Host", HOST), ("Transfer-Encoding", "chunked")]
        response = await wire.request("POST", "/", headers, [b"one,", b"two,", b"three"])
    assert response.json()["body"] == "one,two,three"
    assert dyno.requests[0].chunked


async def test_chunked_response_is_forwarded_chunked() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
        WireClient.connect(r.port) as wire,
    ):
        response = await wire.request("GET", "/chunked", [("Host", HOST)])
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"hello chunked world"


async def test_response_reaches_the_client_before_the_dyno_has_sent_all_of_it() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
        first = await reader.readuntil(b"first\r\n")  # while the dyno still holds "second"
        dyno.release.set()
        rest = await reader.readuntil(b"0\r\n\r\n")
        writer.close()
        await writer.wait_closed()
    assert b"Transfer-Encoding: chunked" in first
    assert rest == b"6\r\nsecond\r\n0\r\n\r\n"


async def test_body_ended_by_dyno_closing_is_rechunked_and_client_connection_kept() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
        WireClient.connect(r.port) as wire,
    ):
        first = await wire.request("GET", "/until-close", [("Host", HOST)])
        second = await wire.request("GET", "/", [("Host", HOST)])
    assert first.headers["transfer-encoding"] == "chunked"
    assert first.body == b"until the end"
    assert second.status == 200


async def test_http10_client_gets_a_chunked_dyno_body_ended_by_close() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port, b"GET /chunked HTTP/1.0\r\nHost: %s\r\n\r\n" % HOST.encode()
        )
    head, body = received.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding" not in head
    assert body == b"hello chunked world"


async def test_sixteen_megabyte_response_arrives_whole() -> None:
    size = 16 * 1024 * 1024

    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        digest = hashlib.sha256()
        async with client(r.port) as http, http.stream("GET", f"/big/{size}") as response:
            async for piece in response.aiter_raw():
                digest.update(piece)
    expected = hashlib.sha256((PATTERN * (size // len(PATTERN) + 1))[:size])
    assert digest.hexdigest() == expected.hexdigest()


async def test_head_response_has_no_body() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
        WireClient.connect(r.port) as wire,
    ):
        head = await wire.request("HEAD", "/big/5000", [("Host", HOST)])
        # h11 would fail to read this one if the HEAD response had carried a body
        after = await wire.request("GET", "/big/3", [("Host", HOST)])
    assert head.headers["content-length"] == "5000"
    assert head.body == b""
    assert after.body == PATTERN[:3]
    assert dyno.connections == 1  # the dyno connection was reused after the HEAD


# ---- connections ------------------------------------------------------------------------


async def test_two_requests_share_one_client_connection() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
        WireClient.connect(r.port) as wire,
    ):
        first = await wire.request("GET", "/one", [("Host", HOST)])
        assert not wire.closed_by_server
        second = await wire.request("GET", "/two", [("Host", HOST)])
    assert (first.json()["path"], second.json()["path"]) == ("/one", "/two")


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        host = HOST.encode()
        received = await raw_exchange(
            r.port,
            b"GET /one HTTP/1.1\r\nHost: %s\r\n\r\n"
            b"GET /two HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (host, host),
        )
    parser = h11.Connection(h11.CLIENT)
    parser.receive_data(received)
    paths = []
    for target in ("/one", "/two"):
        parser.send(h11.Request(method="GET", target=target, headers=[("Host", HOST)]))
        parser.send(h11.EndOfMessage())
        while not isinstance(event := parser.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                paths.append(event.data)
        if target == "/one":
            parser.start_next_cycle()
    assert [b'"path": "/one"' in paths[0], b'"path": "/two"' in paths[1]] == [True, True]


async def test_dyno_connection_is_reused_by_the_next_request() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        async with client(r.port) as http:
            await http.get("/one")
            await http.get("/two")
        assert r.router_lines(APP)[1].split(" connect=")[1].startswith("0ms ")
    assert [got.connection for got in dyno.requests] == [1, 1]


async def test_dyno_closing_its_idle_connection_does_not_fail_the_next_request() -> None:
    async with one_dyno() as (_, _, http):
        first = await http.get("/then-close")
        second = await http.get("/")
    assert (first.status_code, second.status_code) == (200, 200)


# ---- errors -----------------------------------------------------------------------------


async def test_unknown_host_gets_404_and_no_log_line() -> None:
    async with running_router(table_with(APP, [])) as r:
        async with client(r.port) as http:
            response = await http.get("/", headers={"Host": "nope.localhost"})
        assert r.logs.recent("nope", 10) == []
        assert r.logs.recent(APP, 10) == []
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "nope.localhost" in response.text


async def test_app_without_web_dynos_gets_503_and_h14_line() -> None:
    async with running_router(table_with(APP, [])) as r:
        async with client(r.port) as http:
            response = await http.get("/")
        lines = r.router_lines(APP)
    assert response.status_code == 503
    assert "Application error" in response.text
    assert len(lines) == 1
    assert re.fullmatch(
        rf'at=error code=H14 desc="No web processes running" method=GET path="/" '
        rf'host=foo\.localhost request_id={UUID} fwd="127\.0\.0\.1" dyno= connect= '
        rf"service= status=503 bytes= protocol=http",
        lines[0],
    )


async def test_app_whose_web_dynos_crashed_gets_503_and_h10_line() -> None:
    async with running_router(table_with(APP, [], crashed=True)) as r:
        async with client(r.port) as http:
            response = await http.get("/")
        lines = r.router_lines(APP)
    assert response.status_code == 503
    assert lines[0].startswith('at=error code=H10 desc="App crashed" method=GET path="/" ')


async def test_every_dyno_refusing_gives_503_and_h21_line() -> None:
    table = table_with(APP, [dead_endpoint("web.1"), dead_endpoint("web.2")])
    async with running_router(table) as r:
        async with client(r.port) as http:
            response = await http.get("/")
            again = await http.get("/")  # the connection stays usable
        lines = r.router_lines(APP)
    assert (response.status_code, again.status_code) == (503, 503)
    assert re.fullmatch(
        rf'at=error code=H21 desc="Backend connection refused" method=GET path="/" '
        rf'host=foo\.localhost request_id={UUID} fwd="127\.0\.0\.1" dyno=web\.[12] '
        rf"connect=\d+ms service= status=503 bytes= protocol=http",
        lines[0],
    )


async def test_dyno_closing_without_response_gives_503_and_h13_line() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        async with client(r.port) as http:
            response = await http.get("/drop")
        lines = r.router_lines(APP)
    assert response.status_code == 503
    assert lines[0].startswith(
        'at=error code=H13 desc="Connection closed without response" method=GET path="/drop" '
    )
    assert " dyno=web.1 connect=" in lines[0]


async def test_malformed_request_gets_400_and_connection_closed() -> None:
    received = await answer_without_dynos(b"NOT HTTP AT ALL\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close\r\n" in received


async def test_head_request_for_an_error_page_gets_no_body() -> None:
    async with (
        running_router(table_with(APP, [])) as r,
        WireClient.connect(r.port) as wire,
    ):
        head = await wire.request("HEAD", "/", [("Host", HOST)])
        after = await wire.request("GET", "/", [("Host", HOST)])
    assert (head.status, head.body) == (503, b"")
    assert after.body.startswith(b"<!DOCTYPE html>")


# ---- the log line -----------------------------------------------------------------------


async def test_success_log_line_has_herokus_format() -> None:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as r,
    ):
        received = await raw_exchange(
            r.port,
            b"GET /log?x=1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST.encode(),
        )
        lines = r.router_lines(APP)
        line = r.logs.recent(APP, 1)[0]
    assert (line.source, line.dyno) == ("dynos", "router")
    match = re.fullmatch(
        rf'at=info method=GET path="/log\?x=1" host=foo\.localhost request_id={UUID} '
        rf'fwd="127\.0\.0\.1" dyno=web\.1 connect=\d+ms service=\d+ms status=200 '
        rf"bytes=(\d+) protocol=http",
        lines[0],
    )
    assert match is not None
    assert int(match.group(1)) == len(received)


# ---- shutting down ----------------------------------------------------------------------


async def test_close_lets_a_request_in_flight_finish() -> None:
    async with one_dyno() as (dyno, r, http):
        request = asyncio.create_task(http.get("/slow"))
        await dyno.arrived.get()
        closing = asyncio.create_task(r.router.close())
        await asyncio.sleep(0)  # let close() stop accepting and mark connections
        dyno.release.set()
        response = await request
        await closing
    assert response.status_code == 200
    assert response.headers["connection"] == "close"


async def test_close_closes_idle_keep_alive_connections_at_once() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table, drain_timeout=60) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
            await reader.readuntil(b"}")  # the whole JSON answer
            async with asyncio.timeout(2):  # far below drain_timeout
                await r.router.close()
            assert await reader.read() == b""  # closed by the router
            writer.close()
            await writer.wait_closed()


async def test_close_cuts_requests_still_running_after_the_drain_timeout() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table, drain_timeout=0.1) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
            writer.write(b"GET /slow HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
            await dyno.arrived.get()
            await r.router.close()
            with contextlib.suppress(ConnectionResetError):  # cut off: as it should be
                assert await reader.read() == b""
            writer.close()
            with contextlib.suppress(ConnectionResetError):
                await writer.wait_closed()
