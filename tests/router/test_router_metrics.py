"""The router's Prometheus metrics and its batched log lines."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from dynos.core import latency
from dynos.logs.hub import LogHub
from dynos.router.errors import H12
from dynos.router.metrics import _TOP, AppMetrics, RouterMetrics, _bucket, metrics_registry
from dynos.router.request_log import RequestLog, request_line
from tests.router.router_harness import APP, client, fake_dynos, running_router, table_with

pytestmark = pytest.mark.anyio


async def test_metrics_count_requests_by_status_with_latency_and_in_flight() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            for _ in range(3):
                await http.get("/")
            slow = asyncio.create_task(http.get("/slow"))
            while (await dyno.arrived.get()).path != "/slow":
                pass
            during = generate_latest(r.router.metrics_registry).decode()
            dyno.release.set()
            await slow
            after = generate_latest(r.router.metrics_registry).decode()
    assert 'dynos_router_requests_in_flight{app="foo"} 1.0' in during
    assert 'dynos_router_requests_total{app="foo",status="200"} 4.0' in after
    assert 'dynos_router_request_duration_seconds_count{app="foo"} 4.0' in after
    assert 'dynos_router_request_duration_seconds_bucket{app="foo",le="+Inf"} 4.0' in after
    assert 'dynos_router_requests_in_flight{app="foo"} 0.0' in after


def test_router_errors_are_counted_with_their_status() -> None:
    metrics = RouterMetrics()
    metrics.app("foo").observe(503, 0.002)
    metrics.app("foo").observe(200, 7.0)
    text = generate_latest(metrics_registry(metrics)).decode()
    assert 'dynos_router_requests_total{app="foo",status="503"} 1.0' in text
    assert 'dynos_router_request_duration_seconds_bucket{app="foo",le="0.005"} 1.0' in text
    assert 'dynos_router_request_duration_seconds_bucket{app="foo",le="5.0"} 1.0' in text
    assert 'dynos_router_request_duration_seconds_bucket{app="foo",le="10.0"} 2.0' in text
    assert 'dynos_router_request_duration_seconds_sum{app="foo"} 7.002' in text


def test_other_router_processes_add_up_and_stay_counted_after_they_exit() -> None:
    metrics = RouterMetrics()
    metrics.app("foo").observe(200, 0.01)
    other = AppMetrics()
    other.observe(200, 0.02)
    other.observe(502, 0.03)
    other.in_flight = 4
    metrics.elsewhere[1] = {"foo": AppMetrics.from_json(other.to_json())}  # as reported

    def scraped() -> str:
        return generate_latest(metrics_registry(metrics)).decode()

    before = scraped()
    assert 'dynos_router_requests_total{app="foo",status="200"} 2.0' in before
    assert 'dynos_router_requests_total{app="foo",status="502"} 1.0' in before
    assert 'dynos_router_requests_in_flight{app="foo"} 4.0' in before
    metrics.retire(1)  # the process exited: a counter never goes down
    after = scraped()
    assert 'dynos_router_requests_total{app="foo",status="200"} 2.0' in after
    assert 'dynos_router_requests_total{app="foo",status="502"} 1.0' in after
    assert 'dynos_router_requests_in_flight{app="foo"} 0.0' in after


def test_the_routers_inlined_buckets_are_core_latencys() -> None:
    assert _TOP == latency.TOP
    for ms in (*range(-3, 70_000), 262_143, 262_144, 10**9):
        assert _bucket(ms) == latency.bucket(ms), ms


def test_service_queue_errors_and_arrivals_travel_and_add_up() -> None:
    metrics = RouterMetrics()
    here = metrics.app("foo")
    here.arrived = 3
    here.observe_dyno(12, 0, True)
    here.observe_dyno(300, 40, False)
    here.observe_error("H12")
    other = AppMetrics()
    other.arrived = 1
    other.observe_dyno(12, 2, True)
    other.observe_error("H12")
    metrics.elsewhere[1] = {"foo": AppMetrics.from_json(other.to_json())}
    total = metrics.total()["foo"].to_json()
    assert total["arrived"] == 4 and total["answered"] == 2
    assert total["errors"] == {"H12": 2}
    assert total["service"] == {str(latency.bucket(12)): 2, str(latency.bucket(300)): 1}
    assert total["queue"] == {"0": 1, "2": 1, str(latency.bucket(40)): 1}
    metrics.retire(1)
    assert metrics.total()["foo"].to_json()["service"][str(latency.bucket(12))] == 2


async def test_the_router_counts_service_times_queue_times_and_h_codes() -> None:
    async with fake_dynos("web.1") as [dyno]:
        table = table_with(APP, [dyno.endpoint])
        async with running_router(table) as r, client(r.port) as http:
            for _ in range(4):
                assert (await http.get("/")).status_code == 200
            figures = r.router.metrics.apps[APP].to_json()
    assert figures["arrived"] == 4 and figures["answered"] == 4
    assert sum(figures["service"].values()) == 4 and sum(figures["queue"].values()) == 4
    assert figures["errors"] == {}


async def test_a_router_error_is_counted_by_its_code() -> None:
    table = table_with(APP, [])  # no web dyno: H14
    async with running_router(table) as r, client(r.port) as http:
        assert (await http.get("/")).status_code == 503
        figures = r.router.metrics.apps[APP].to_json()
    assert figures["errors"] == {"H14": 1} and figures["arrived"] == 1
    assert figures["answered"] == 0 and figures["service"] == {}


def test_a_latency_on_a_bucket_bound_falls_in_that_bucket() -> None:
    metrics = AppMetrics()
    metrics.observe(200, 0.005)
    assert metrics.buckets[0] == 1


async def test_log_lines_are_written_in_a_batch_after_the_loop_iteration() -> None:
    hub = LogHub()
    log = RequestLog(hub)
    fields = (b"GET", b"/", "foo.localhost", "id", "1.2.3.4", "web.1", 0, 1, 200, 5, None)
    log.add("foo", fields)
    log.add("foo", (b"GET", b"/b", "foo.localhost", "id2", "", "", None, None, 503, None, H12))
    assert hub.recent("foo", 10) == []  # nothing written yet: off the request's path
    await asyncio.sleep(0)
    lines = [line.message for line in hub.recent("foo", 10)]
    assert lines[0].startswith('at=info method=GET path="/" host=foo.localhost ')
    assert lines[1].startswith('at=error code=H12 desc="Request timeout" method=GET path="/b"')


async def test_batched_lines_are_the_request_line_format() -> None:
    hub = LogHub()
    log = RequestLog(hub)
    odd = (b"GET", b'/a"b\\c', "foo.localhost", "rid", '1.2.3.4" x="y', "web.1", 3, 40, 200, 7)
    log.add("foo", (*odd, None))
    log.add("foo", (b"POST", b"/", "foo localhost", "rid", "", "", None, None, 503, None, H12))
    log.flush()
    lines = [line.message for line in hub.recent("foo", 10)]
    assert lines == [
        request_line(
            method="GET",
            path='/a"b\\c',
            host="foo.localhost",
            request_id="rid",
            fwd='1.2.3.4" x="y',
            dyno="web.1",
            connect_ms=3,
            service_ms=40,
            status=200,
            bytes_sent=7,
        ),
        request_line(
            method="POST",
            path="/",
            host="foo localhost",
            request_id="rid",
            fwd="",
            dyno="",
            connect_ms=None,
            service_ms=None,
            status=503,
            bytes_sent=None,
            error=H12,
        ),
    ]
