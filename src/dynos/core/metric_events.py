"""Which log lines are events on the metrics' plots (Heroku's Events row): deploys, config
changes, restarts, scale and size changes, crashes, R14/R15, idling and waking, autoscaling.

Every such thing is already said in the app's log by whoever did it (``app[api]``,
``heroku[web.1]``, ``app[autoscaler]``), so the metrics read them there, in one place
(platform/metrics.py watches the log hub), rather than in every use-case. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

APP_SOURCE = "app"
PLATFORM_SOURCE = "dynos"  # logs/logline.py PLATFORM: shown as heroku[web.1]
KINDS = (
    "deploy",
    "config",
    "restart",
    "scale",
    "size",
    "crash",
    "R14",
    "R15",
    "idle",
    "wake",
    "autoscale",
)

_BY_USER = re.compile(r" by user \S+\Z")
_FORMATION = re.compile(r"(\w[\w-]*)@(\d+):(\S+)")


@dataclass(frozen=True)
class MetricEvent:
    at: float  # epoch seconds
    kind: str
    message: str


def classify(source: str, dyno: str, message: str) -> str | None:
    """The event kind of a log line (its source, dyno and text), or None. Scale lines are
    "scale"; ``scale_or_size`` tells a size change apart."""
    if source == APP_SOURCE:
        if dyno == "autoscaler":
            return "autoscale"
        if dyno != "api":
            return None
        text = _BY_USER.sub("", message)
        if text.startswith(("Deploy ", "Rollback to ")):
            return "deploy"
        if text.startswith(("Set ", "Remove ")) and "config var" in text:
            return "config"
        if text.startswith("Restart") or text == "Stop" or text.startswith("Stop "):
            return "restart"
        if text.startswith("Scaled to "):
            return "scale"
        return None
    if source != PLATFORM_SOURCE or dyno == "router":
        return None
    if message.startswith("Error R14"):
        return "R14"
    if message.startswith("Error R15"):
        return "R15"
    if message == "State changed from up to crashed" or message.startswith(
        "State changed from starting to crashed"
    ):
        return "crash"
    if message == "Idling":
        return "idle"
    if message == "Unidling":
        return "wake"
    return None


def formation_sizes(message: str) -> dict[str, str]:
    """The sizes a ``Scaled to web@2:Standard-1X ...`` line names, by process type."""
    return {type_: size for type_, _, size in _FORMATION.findall(message)}


def scale_or_size(before: dict[str, str] | None, message: str) -> str:
    """ "size" when a ``Scaled to`` line changes a type's size from ``before`` (the last such
    line's sizes), else "scale"."""
    after = formation_sizes(message)
    if before and any(t in before and before[t] != size for t, size in after.items()):
        return "size"
    return "scale"


def event_message(source: str, dyno: str, message: str) -> str:
    """The event's text: the line without its user, prefixed by where it came from."""
    return f"{source}[{dyno}]: {_BY_USER.sub('', message)}"
