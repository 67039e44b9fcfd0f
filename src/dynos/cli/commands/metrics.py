"""``metrics``: an app's Heroku-style metrics in the terminal, one sparkline per series
(``GET /apps/{app}/metrics``: response times, throughput by status class, router errors,
memory and load, and the events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import echo_lines, header

BARS = "▁▂▃▄▅▆▇█"
WIDTH = 60  # characters of a sparkline: a 1h window is one per minute
EVENTS_SHOWN = 10


def sparkline(values: list[float | None], width: int = WIDTH) -> str:
    """``values`` in at most ``width`` bars (each the largest of the values it covers), from 0
    to their maximum; a space where there was nothing."""
    if len(values) > width:
        size = len(values) / width
        groups = [values[int(i * size) : int((i + 1) * size)] for i in range(width)]
        values = [max((v for v in g if v is not None), default=None) for g in groups]
    top = max((v for v in values if v is not None), default=None)
    if top is None:
        return " " * len(values)
    bars = []
    for value in values:
        if value is None:
            bars.append(" ")
        elif top <= 0:
            bars.append(BARS[0])
        else:
            bars.append(BARS[min(len(BARS) - 1, int(value / top * (len(BARS) - 1) + 0.5))])
    return "".join(bars)


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.2f}"


def _summary(values: list[Any], unit: str, *, total: bool = False) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return "no data"
    if total:
        return f"{_number(sum(seen))}{unit} in all, at most {_number(max(seen))}{unit} a step"
    return f"last {_number(seen[-1])}{unit}, max {_number(max(seen))}{unit}"


def format_metrics(report: dict[str, Any]) -> list[str]:
    """What ``dynos metrics`` prints for one answer of the API."""
    series = report["series"]
    step = report["step_seconds"]
    per = "min" if step == 60 else f"{step // 60} min"
    quota = report.get("memory_quota_mb")
    rows: list[tuple[str, list[Any], str]] = [
        ("Response time p50", series["response_time_p50_ms"], " ms"),
        ("Response time p95", series["response_time_p95_ms"], " ms"),
        ("Response time p99", series["response_time_p99_ms"], " ms"),
    ]
    for status_class in ("2xx", "3xx", "4xx", "5xx"):
        rows.append((f"Requests {status_class}", series[f"requests_{status_class}"], f"/{per}"))
    for code, values in sorted(report["router_errors"].items()):
        rows.append((f"Router {code}", values, f"/{per}"))
    memory_unit = f" MB of {quota} MB" if quota else " MB"
    rows += [
        ("Memory RSS mean", series["memory_rss_mb_mean"], " MB"),
        ("Memory RSS max", series["memory_rss_mb_max"], memory_unit),
        ("Memory swap mean", series["memory_swap_mb_mean"], " MB"),
        ("Dyno load mean", series["load_mean"], ""),
        ("Dyno load max", series["load_max"], ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        header(
            f"{report['app']} {report['process_type']} metrics, last {report['window']} "
            f"({step // 60}-minute steps)"
        )
    ]
    for name, values, unit in rows:
        is_count = name.startswith(("Requests", "Router"))
        summary = _summary(values, unit, total=is_count)
        lines.append(f"{name.ljust(width)}  {sparkline(values)}  {summary}")
    events = report["events"][-EVENTS_SHOWN:]
    if events:
        lines += ["", header("Events")]
        for event in events:
            at = datetime.fromtimestamp(event["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{at}  {event['kind'].ljust(9)}  {event['message']}")
    return lines


@click.command()
@app_option
@click.option("--type", "process_type", default="web", show_default=True, help="Process type.")
@click.option(
    "--window",
    type=click.Choice(["1h", "6h", "24h", "7d"]),
    default="1h",
    show_default=True,
    help="How far back: 1h, 6h and 24h in 1-minute steps, 7d in 10-minute steps.",
)
def metrics(app: str | None, process_type: str, window: str) -> None:
    """Show the app's response times, throughput, router errors, memory, load and events."""
    name = require_app(app)
    with connect() as api:
        query = urlencode({"process_type": process_type, "window": window})
        echo_lines(format_metrics(api.get(f"{app_path(name, 'metrics')}?{query}")))


COMMANDS: dict[str, click.Command] = {"metrics": metrics}
