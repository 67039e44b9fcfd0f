"""Which nodes the swarm guard admits dynos to, and which it may have left guarded: the pure
decisions of ``backends/swarm_guard.py`` on its tasks (``TaskView``) and the nodes' labels.

A guard task's template label (``TEMPLATE_LABEL``) is its generation, a number, or TEARDOWN
for the tasks that remove the rules at the server's close. Generations start at the
server's start time in nanoseconds (``first_generation``), so that a task a previous server
process left (its generations began earlier) never passes for one made since a node came
back in this one's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from dynos.core.swarm import TaskView

TEARDOWN = "teardown"  # the template label of the guard's last tasks, which remove the rules
LAYOUT_LABEL = "io.dynos.guard-rules"  # its tasks' label: core.swarm_guard.rules_layout


def first_generation() -> int:
    """A generation no earlier server process on this machine used (their clocks ran
    before this one started)."""
    return time.time_ns()


def generation(task: TaskView) -> int | None:
    """The guard generation a task was made in; None for a teardown task (or junk)."""
    return int(task.template) if task.template.isdigit() else None


def admits(task: TaskView, wanted: int | None = None) -> bool:
    """Whether ``task`` may put its node's label on: running, of a guard generation (a
    teardown task runs to delete the rules), and for a node that came back (``wanted``:
    the generation made since, None while it is not back) of that generation or a later."""
    made = generation(task)
    if not task.running or made is None:
        return False
    return wanted is None or made >= wanted


def unguarded(labelled: Iterable[str], tasks: Sequence[TaskView]) -> set[str]:
    """The labelled nodes where no guard task runs (failing its health check, stopped):
    they lose their label until one does."""
    running = {task.node_id for task in tasks if admits(task)}
    return set(labelled) - running


def overdue(
    since: Mapping[str, float], unguarded_now: Iterable[str], now: float, grace: float
) -> tuple[dict[str, float], set[str]]:
    """When each node without a guard task was first seen so (``since``, updated: a node
    with one again forgotten) and those without one for ``grace`` seconds or more: a task
    restarting (its rules stay meanwhile, its successor is healthy within seconds) is no
    reason to move the node's dynos away; a guard that never gets healthy is."""
    updated = {node: since.get(node, now) for node in unguarded_now}
    return updated, {node for node, first in updated.items() if now - first >= grace}


def update_order(
    current_template: str | None, same_layout: bool = True
) -> Literal["start-first", "stop-first"]:
    """How the guard's service is updated to new guard tasks: start-first (each node's new
    task loads its rules while the old one still runs: a new task that fails leaves the old
    one guarding), but stop-first from a teardown a failed close left (its task would
    delete the new task's rules meanwhile) and from a guard whose rules have another layout
    (``same_layout`` False: an older dynos's, whose task would load its own rules again over
    the new task's until it stops). The rules stay while no task runs."""
    if current_template == TEARDOWN or not same_layout:
        return "stop-first"
    return "start-first"


def left_with_rules(
    carried: Iterable[str], tasked: Sequence[TaskView], done: Iterable[str]
) -> set[str]:
    """At close, the nodes that may keep the guard's rules: every node that carried the
    label (``carried``) or had a guard task (``tasked``, listed before the teardown) and
    whose teardown task did not report them gone (``done``)."""
    had = set(carried) | {task.node_id for task in tasked if task.node_id}
    return had - set(done)
