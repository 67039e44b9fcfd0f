"""core/latency.py, core/metrics.py, core/metric_events.py and core/runtime_metrics.py:
histograms and percentiles, the router's cumulative counts into minutes and one-second
slots, rollups, the API's columns, the events read from log lines, Heroku's runtime lines.
No sockets, no clock."""

from __future__ import annotations

import math
import random

import pytest

from dynos.core import latency
from dynos.core.metric_events import classify, scale_or_size
from dynos.core.metrics import (
    Period,
    Recorder,
    RequestTotals,
    UsageSample,
    parse_window,
    rollup,
    series,
    steps,
)
from dynos.core.runtime_metrics import LoadAverages, RuntimeSample, load, runtime_lines
from dynos.errors import UserError

T0 = 1_800_000_000  # a minute's start (divisible by 600)


def test_percentiles_are_within_the_stated_error_of_the_exact_ones() -> None:
    rng = random.Random(16)
    times = [round(rng.lognormvariate(4, 1.2)) for _ in range(20_000)]
    histogram: latency.Histogram = {}
    for ms in times:
        latency.add_to(histogram, ms)
    ordered = sorted(times)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        found = latency.percentile(histogram, q)
        assert found is not None
        assert abs(found - exact) <= exact * latency.RELATIVE_ERROR, (q, found, exact)


def test_buckets_are_contiguous_and_each_within_the_bound() -> None:
    assert [latency.bucket(v) for v in range(-2, 9)] == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    previous = 0
    for v in range(1, latency.TOP + 1):
        index = latency.bucket(v)
        assert index in (previous, previous + 1)
        lowest, highest = latency.bounds(index)
        assert lowest <= v <= highest
        assert abs(latency.representative(index) - v) <= v * latency.RELATIVE_ERROR
        previous = index
    assert previous == latency.BUCKETS - 1 == latency.bucket(10**9)
    assert all(latency.bounds(i)[0] == i for i in range(16))  # exact below 16 ms


def test_percentile_edges() -> None:
    assert latency.percentile({}, 0.95) is None
    assert latency.percentile({0: 3}, 0.5) == 0.0  # under a millisecond
    huge: latency.Histogram = {}
    latency.add_to(huge, 10**7)
    assert latency.percentile(huge, 0.99) == latency.representative(latency.BUCKETS - 1)
    # nearest rank: 19 of 20 at 10 ms, one at 1 s -> p95 is 10 ms, p99 is 1 s
    h: latency.Histogram = {}
    for _ in range(19):
        latency.add_to(h, 10)
    latency.add_to(h, 1000)
    assert latency.percentile(h, 0.95) == pytest.approx(10, rel=latency.RELATIVE_ERROR)
    assert latency.percentile(h, 0.99) == pytest.approx(1000, rel=latency.RELATIVE_ERROR)


def test_histograms_travel_as_json_and_refuse_junk() -> None:
    h = {3: 2, 40: 1}
    assert latency.from_json(latency.to_json(h)) == h
    assert latency.from_json({"x": 1, "5": -1, "128": 1, "7": "2", "8": 4}) == {8: 4}
    assert latency.from_json([1, 2]) == {}


def totals(statuses: dict[int, int], service_ms: list[int], **kw: int) -> RequestTotals:
    service: latency.Histogram = {}
    for ms in service_ms:
        latency.add_to(service, ms)
    return RequestTotals(
        statuses=statuses,
        service=service,
        queue=dict(service),
        arrived=kw.get("arrived", sum(statuses.values())),
        answered=kw.get("answered", sum(statuses.values())),
        errors={k: v for k, v in kw.items() if k.startswith("H")},
        in_flight=kw.get("in_flight", 0),
    )


def test_cumulative_readings_become_minutes_by_status_class() -> None:
    r = Recorder()
    r.requests(T0 + 1, {"a": totals({200: 3}, [5, 5, 5])})
    r.requests(T0 + 2, {"a": totals({200: 5, 404: 1, 503: 2}, [5] * 6, H12=2)})
    assert r.due(T0 + 59) == []  # the minute is not over
    r.requests(T0 + 61, {"a": totals({200: 7, 404: 1, 503: 2}, [5] * 8, H12=2)})
    [(app, type_, at, period)] = r.due(T0 + 61)
    assert (app, type_, at) == ("a", "web", T0)
    assert period.requests == {"2xx": 7, "4xx": 1, "5xx": 2}  # the 3rd reading was late
    assert period.errors == {"H12": 2}
    assert sum(period.service.values()) == 8


def test_a_router_process_that_started_again_counts_from_zero() -> None:
    before = totals({200: 10}, [1] * 10)
    after = totals({200: 3}, [1] * 3)
    assert after.since(before).statuses == {200: 3}
    assert sum(after.since(before).service.values()) == 3


def test_the_autoscaler_window_over_the_last_seconds() -> None:
    r = Recorder()
    r.requests(T0, {"a": totals({}, [])})
    r.requests(T0 + 1, {"a": totals({200: 100}, [10] * 100)})  # 100 requests at 10 ms
    r.requests(T0 + 55, {"a": totals({200: 110}, [10] * 100 + [800] * 10, arrived=130)})
    recent = r.window("a", T0 + 56, 6)
    assert recent.p95_ms == pytest.approx(800, rel=latency.RELATIVE_ERROR)
    assert recent.arrivals == pytest.approx(30 / 6)
    assert recent.answered == pytest.approx(10 / 6)
    minute = r.window("a", T0 + 56, 60)
    assert minute.p95_ms == pytest.approx(800, rel=latency.RELATIVE_ERROR)  # 10 of 110
    assert minute.arrivals == pytest.approx(130 / 60)
    assert r.window("a", T0 + 200, 60).p95_ms is None  # nothing in the last minute
    assert r.window("nobody", T0, 60).arrivals == 0


def test_a_short_window_ends_at_the_last_reading_and_holds_what_is_in_flight() -> None:
    r = Recorder()
    r.requests(T0 + 0.5, {"a": totals({}, [])})
    r.requests(T0 + 1.5, {"a": totals({200: 20}, [50] * 20, arrived=60, in_flight=40)})
    r.requests(T0 + 2.5, {"a": totals({200: 40}, [50] * 40, arrived=120, in_flight=80, H19=2)})
    # Asked at T0 + 3.2, before the reading of second T0 + 3: the 2 s are T0+1 and T0+2,
    # not T0+2 alone over two seconds (which halved the rates).
    now = r.window("a", T0 + 3.2, 2)
    assert now.arrivals == pytest.approx(60) and now.answered == pytest.approx(20)
    assert now.in_flight == 80 and now.failed == pytest.approx(1)
    assert now.busy == 0  # none in flight at the reading that opened the window
    assert r.window("a", T0 + 3.2, 1).busy == 40  # from T0 + 1.5 on, 40 at least
    # Readings that stopped (no router) do not hold the window at the last one.
    assert r.window("a", T0 + 30, 2).arrivals == 0


def test_usage_samples_make_means_and_maxima() -> None:
    r = Recorder()
    r.usage(
        T0 + 5,
        [UsageSample("a", "web", 100, 0, 0.5, 512), UsageSample("a", "web", 300, 8, 1.5, 512)],
    )
    r.usage(T0 + 25, [UsageSample("a", "worker", 50, 0, 0.1, 1024)])
    periods = {(app, t): p for app, t, _, p in r.flush()}
    web = periods[("a", "web")]
    columns, errors, quota = series({T0: web}, [T0])
    assert columns["memory_rss_mb_mean"] == [200] and columns["memory_rss_mb_max"] == [300]
    assert columns["memory_swap_mb_mean"] == [4] and columns["load_mean"] == [1.0]
    assert columns["load_max"] == [1.5] and quota == 512
    assert columns["requests_2xx"] == [None]  # no request was counted: no data, not 0
    assert errors == {}
    assert periods[("a", "worker")].quota_mb == 1024


def test_rollup_adds_minutes_into_ten() -> None:
    minute = Period(
        requests={"2xx": 2},
        service={10: 2},
        errors={"H13": 1},
        samples=1,
        rss_mb_sum=10,
        rss_mb_max=10,
        load_sum=1,
        load_max=1,
        quota_mb=512,
    )
    other = Period(
        requests={"2xx": 1, "5xx": 1},
        service={20: 1},
        samples=1,
        rss_mb_sum=30,
        rss_mb_max=30,
        load_sum=3,
        load_max=3,
    )
    rolled = rollup([(T0, minute), (T0 + 540, other), (T0 + 600, other)])
    assert sorted(rolled) == [T0, T0 + 600]
    ten = rolled[T0]
    assert ten.requests == {"2xx": 3, "5xx": 1} and ten.service == {10: 2, 20: 1}
    assert ten.samples == 2 and ten.rss_mb_max == 30 and ten.quota_mb == 512
    assert Period.from_json(ten.to_json()) == ten


def test_series_are_columns_with_nulls_and_seen_codes_only() -> None:
    at = steps(T0 + 30, "1h")
    assert len(at) == 60 and at[-1] == T0 and at[1] - at[0] == 60
    assert len(steps(T0 + 30, "7d")) == 7 * 144 and parse_window("24h") == (86400, 60)
    with pytest.raises(UserError, match="use one of 1h, 6h, 24h, 7d"):
        parse_window("2h")
    p = Period(requests={"2xx": 4}, service={latency.bucket(100): 4}, errors={"H12": 1})
    columns, errors, _ = series({at[-1]: p}, at)
    assert columns["requests_2xx"][-1] == 4 and columns["requests_5xx"][-1] == 0
    assert columns["requests_2xx"][0] is None
    assert columns["response_time_p50_ms"][-1] == pytest.approx(100, rel=0.05)
    assert errors == {"H12": [None] * 59 + [1]}
    assert all(len(c) == 60 for c in columns.values())


@pytest.mark.parametrize(
    ("source", "dyno", "message", "kind"),
    [
        ("app", "api", "Deploy 1a2b3c by user me@example.com", "deploy"),
        ("app", "api", "Rollback to v3 by user me@example.com", "deploy"),
        ("app", "api", "Set FOO config vars by user me@example.com", "config"),
        ("app", "api", "Remove FOO, BAR config vars by user x@y", "config"),
        ("app", "api", "Restart web by user x@y", "restart"),
        ("app", "api", "Restart by user x@y", "restart"),
        ("app", "api", "Scaled to web@2:Basic by user x@y", "scale"),
        ("app", "api", "Release v4 created by user x@y", None),
        (
            "app",
            "autoscaler",
            'scale from=1 to=2 p95=812ms target=p95<500ms reason="over"',
            "autoscale",
        ),
        ("app", "web.1", "Error R14 (Memory quota exceeded)", None),  # the app's own output
        ("dynos", "web.1", "Error R14 (Memory quota exceeded)", "R14"),
        ("dynos", "web.1", "Error R15 (Memory quota vastly exceeded)", "R15"),
        ("dynos", "web.1", "State changed from up to crashed", "crash"),
        ("dynos", "web.1", "State changed from up to down", None),
        ("dynos", "web.1", "Idling", "idle"),
        ("dynos", "web.1", "Unidling", "wake"),
        ("dynos", "router", "at=error code=H12", None),
    ],
)
def test_events_are_read_from_log_lines(
    source: str, dyno: str, message: str, kind: str | None
) -> None:
    assert classify(source, dyno, message) == kind


def test_a_scale_that_changes_a_size_is_a_size_event() -> None:
    assert scale_or_size(None, "Scaled to web@2:Basic by user x") == "scale"
    assert scale_or_size({"web": "Basic"}, "Scaled to web@3:Basic by user x") == "scale"
    assert scale_or_size({"web": "Basic"}, "Scaled to web@3:Standard-2X by user x") == "size"


def test_load_and_its_averages() -> None:
    assert load(None, 5.0, 20) == 0.0
    assert load(1.0, 11.0, 20) == 0.5
    assert load(11.0, 1.0, 20) == 0.0  # a process exited with its seconds
    averages = LoadAverages()
    for _ in range(30):  # ten minutes at a load of 1
        averages = averages.updated(1.0, 20)
    assert averages.one == pytest.approx(1.0, abs=0.01)
    assert 0.8 < averages.five < 0.9 and 0.4 < averages.fifteen < 0.5


def test_runtime_lines_in_herokus_format() -> None:
    mb = 1024 * 1024
    sample = RuntimeSample(
        "web.1",
        "heroku.app-id.dyno-id",
        21 * mb,
        0,
        mb // 2,
        348836,
        343403,
        512,
        LoadAverages(2.456, 1.06, 0.99),
    )
    load_line, memory_line = runtime_lines(sample)
    assert load_line == (
        "source=web.1 dyno=heroku.app-id.dyno-id sample#load_avg_1m=2.46 "
        "sample#load_avg_5m=1.06 sample#load_avg_15m=0.99"
    )
    assert memory_line == (
        "source=web.1 dyno=heroku.app-id.dyno-id sample#memory_total=21.00MB "
        "sample#memory_rss=21.00MB sample#memory_cache=0.50MB sample#memory_swap=0.00MB "
        "sample#memory_pgpgin=348836pages sample#memory_pgpgout=343403pages "
        "sample#memory_quota=512.00MB"
    )
