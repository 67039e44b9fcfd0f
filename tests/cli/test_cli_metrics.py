"""``dynos metrics``' output: sparklines and summaries from an answer of the metrics API."""

from __future__ import annotations

from typing import Any

from dynos.cli.commands.metrics import format_metrics, sparkline


def test_sparkline_scales_from_zero_to_the_maximum_with_gaps() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([None, 4, None, 8]) == " ▅ █"
    assert sparkline([None, None]) == "  "
    assert sparkline([0, 0]) == "▁▁"


def test_a_long_window_is_squeezed_to_the_width_by_maxima() -> None:
    values: list[float | None] = [None] * 1440
    values[700] = 10.0
    line = sparkline(values, width=60)
    assert len(line) == 60 and line.count("█") == 1 and line.strip() == "█"


def report() -> dict[str, Any]:
    nothing: list[Any] = [None] * 3
    return {
        "app": "shop",
        "process_type": "web",
        "window": "1h",
        "step_seconds": 60,
        "series": {
            "at": [0, 60, 120],
            "response_time_p50_ms": [10.2, None, 30.5],
            "response_time_p95_ms": [100, None, 300],
            "response_time_p99_ms": nothing,
            "requests_2xx": [5, None, 7],
            "requests_3xx": [0, None, 0],
            "requests_4xx": [1, None, 0],
            "requests_5xx": [0, None, 2],
            "memory_rss_mb_mean": [40.5, 41.0, None],
            "memory_rss_mb_max": [41.0, 42.0, None],
            "memory_swap_mb_mean": [0, 0, None],
            "load_mean": [0.1, 0.2, None],
            "load_max": [0.3, 0.4, None],
        },
        "router_errors": {"H12": [0, None, 2]},
        "memory_quota_mb": 512,
        "events": [{"at": 1800000000, "kind": "deploy", "message": "app[api]: Deploy abc"}],
    }


def test_the_summary_names_each_series_with_its_sparkline() -> None:
    lines = format_metrics(report())
    assert lines[0] == "=== shop web metrics, last 1h (1-minute steps)"
    by_name = {line[:17].strip(): line for line in lines[1:] if line and not line.startswith("=")}
    assert by_name["Response time p50"].endswith("▃ █  last 30.50 ms, max 30.50 ms")
    assert by_name["Response time p99"].endswith("no data")
    assert "12/min in all, at most 7/min a step" in by_name["Requests 2xx"]
    assert "2/min in all" in by_name["Router H12"]
    assert "last 42 MB of 512 MB, max 42 MB" in by_name["Memory RSS max"]
    assert lines[-1] == "2027-01-15 08:00:00  deploy     app[api]: Deploy abc"
