"""``ps:autoscale``, ``ps:autoscale:enable``, ``ps:autoscale:disable``: a process type's
autoscaling (platform/autoscaling.py). Heroku's flags where Heroku has them (``--min``,
``--max``, ``--p95``); ``--queue``, ``--per-dyno`` and ``--cooldown`` for worker types, which
Heroku does not autoscale. Every size may autoscale here.
"""

from __future__ import annotations

from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object


def format_autoscaling(entries: list[dict[str, Any]]) -> list[str]:
    """What ``ps:autoscale`` prints: each type's policy, status and last decisions."""
    if not entries:
        return ["No process type autoscales. Turn it on with ps:autoscale:enable."]
    lines: list[str] = []
    for entry in entries:
        policy = entry["policy"] or {}
        shown = {"Range": f"{policy.get('min')}..{policy.get('max')}"}
        if "p95" in policy:
            shown["Target"] = f"p95 under {policy['p95']} ms"
        elif "queue_time" in policy:
            shown["Target"] = f"queue time under {policy['queue_time']} ms"
        else:
            shown["Queues"] = ", ".join(policy.get("queue", []))
            shown["Target"] = f"{policy.get('per_dyno')} jobs per dyno"
            shown["Cooldown"] = f"{policy.get('cooldown')} s"
        shown["Status"] = entry["status"]
        lines += [header(f"{entry['type']} autoscaling"), *styled_object(shown)]
        for d in entry["decisions"][-10:]:
            lines.append(
                f"  {d['at']}  {d['from']} → {d['to']}  {d['metric']} "
                f"(target {d['target']}): {d['reason']}"
            )
        lines.append("")
    return lines[:-1]


@click.command("ps:autoscale")
@app_option
def autoscale_show(app: str | None) -> None:
    """Show each process type's autoscaling and its last decisions."""
    name = require_app(app)
    with connect() as api:
        echo_lines(format_autoscaling(api.get(app_path(name, "autoscaling")) or []))


@click.command("ps:autoscale:enable")
@app_option
@click.argument("process_type", default="web")
@click.option("--min", "minimum", type=int, default=None, help="Fewest dynos (web: 1 or more).")
@click.option("--max", "maximum", type=int, required=True, help="Most dynos.")
@click.option("--p95", type=int, default=None, help="web: the p95 response time to keep, ms.")
@click.option("--queue-time", type=int, default=None, help="web: the queue time to keep, ms.")
@click.option(
    "--queue", "queues", multiple=True, help="worker: a queue to watch, rq:NAME or celery:NAME."
)
@click.option("--per-dyno", type=int, default=None, help="worker: jobs one dyno takes.")
@click.option("--cooldown", type=int, default=None, help="worker: seconds before scaling down.")
def autoscale_enable(
    app: str | None,
    process_type: str,
    minimum: int | None,
    maximum: int,
    p95: int | None,
    queue_time: int | None,
    queues: tuple[str, ...],
    per_dyno: int | None,
    cooldown: int | None,
) -> None:
    """Turn on autoscaling of a process type, e.g.
    ps:autoscale:enable worker --min 0 --max 8 --queue rq:default --per-dyno 20."""
    name = require_app(app)
    body: dict[str, Any] = {"max": maximum}
    given = {
        "min": minimum,
        "p95": p95,
        "queue_time": queue_time,
        "queue": list(queues) or None,
        "per_dyno": per_dyno,
        "cooldown": cooldown,
    }
    body.update({key: value for key, value in given.items() if value is not None})
    with (
        connect() as api,
        action(f"Enabling autoscaling of {process_type} for {app_label(name)}"),
    ):
        api.put(app_path(name, f"formation/{process_type}/autoscaling"), body)


@click.command("ps:autoscale:disable")
@app_option
@click.argument("process_type", default="web")
def autoscale_disable(app: str | None, process_type: str) -> None:
    """Turn off autoscaling of a process type (its dynos stay as they are)."""
    name = require_app(app)
    with (
        connect() as api,
        action(f"Disabling autoscaling of {process_type} for {app_label(name)}"),
    ):
        api.delete(app_path(name, f"formation/{process_type}/autoscaling"))


COMMANDS: dict[str, click.Command] = {
    "ps:autoscale": autoscale_show,
    "ps:autoscale:enable": autoscale_enable,
    "ps:autoscale:disable": autoscale_disable,
}
