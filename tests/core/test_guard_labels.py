"""Which nodes the swarm guard labels for dynos, unlabels, and names at close
(core/guard_labels.py): on task views as the engine reports them."""

from __future__ import annotations

from dynos.core.guard_labels import (
    TEARDOWN,
    admits,
    first_generation,
    generation,
    left_with_rules,
    overdue,
    unguarded,
    update_order,
)
from dynos.core.swarm import TaskView


def task(node: str, template: str, state: str = "running", desired: str = "running") -> TaskView:
    return TaskView(f"t-{node}-{template}", 0, node, state, desired, template)


def test_a_teardown_task_never_labels_its_node() -> None:
    # A guard a failed close left in teardown: its tasks delete the rules while they run.
    assert not admits(task("n1", TEARDOWN))
    assert generation(task("n1", TEARDOWN)) is None
    assert not admits(task("n1", ""))  # no template label: not a guard task of ours
    assert admits(task("n1", "7"))
    assert not admits(task("n1", "7", state="starting"))  # not healthy yet
    assert not admits(task("n1", "7", desired="shutdown"))


def test_a_returning_node_is_labelled_only_by_a_task_made_since_it_came_back() -> None:
    assert not admits(task("n1", "41"), wanted=42)
    assert admits(task("n1", "42"), wanted=42)
    assert admits(task("n1", "43"), wanted=42)
    assert not admits(task("n1", TEARDOWN), wanted=42)


def test_generations_start_past_any_earlier_server_s() -> None:
    # A previous server process counted from its own start: its tasks' generations are
    # below this one's first, so a stale task of it never admits a node that came back.
    earlier = first_generation()
    stale = task("n1", str(earlier + 3))  # an earlier run that bumped three times
    later = first_generation()
    assert later > earlier
    assert not admits(stale, wanted=max(later, earlier + 4))
    assert generation(task("n1", str(later))) == later


def test_a_labelled_node_without_a_running_guard_task_is_unguarded() -> None:
    tasks = [
        task("n1", "5"),
        task("n2", "5", state="starting"),  # restarted after failed health checks
        task("n3", TEARDOWN),
        task("n4", "4"),  # an older generation still running (start-first update)
    ]
    assert unguarded({"n1", "n2", "n3", "n4", "n5"}, tasks) == {"n2", "n3", "n5"}
    assert unguarded(set(), tasks) == set()


def test_an_update_from_a_teardown_stops_its_tasks_before_the_guard_starts() -> None:
    assert update_order(TEARDOWN) == "stop-first"
    assert update_order("5") == "start-first"
    assert update_order(None) == "start-first"  # a new service
    # An older dynos's guard, whose rules have another layout: its task would load its own
    # again over the new task's every 2 s, so it stops first (its rules stay meanwhile).
    assert update_order("5", same_layout=False) == "stop-first"
    assert update_order("5", same_layout=True) == "start-first"


def test_the_close_names_every_node_that_carried_the_label_or_a_guard_task() -> None:
    tasked = [task("n1", "5"), task("n3", "5", state="starting"), task("", "5")]
    # n2 carried the label, down: no teardown there; n3 drained with a guard task; n4 done.
    missing = left_with_rules({"n1", "n2", "n4"}, tasked, {"n1", "n4"})
    assert missing == {"n2", "n3"}
    assert left_with_rules({"n1"}, [task("n1", "5")], {"n1"}) == set()


def test_a_node_loses_its_label_only_after_the_grace_without_a_guard_task() -> None:
    since, late = overdue({}, {"n1"}, now=100.0, grace=30.0)
    assert since == {"n1": 100.0} and late == set()  # a task restarting: not yet
    since, late = overdue(since, {"n1", "n2"}, now=129.0, grace=30.0)
    assert since == {"n1": 100.0, "n2": 129.0} and late == set()
    since, late = overdue(since, {"n1", "n2"}, now=130.0, grace=30.0)
    assert late == {"n1"}  # never healthy again: its dynos move to guarded nodes
    since, late = overdue(since, {"n2"}, now=200.0, grace=30.0)
    assert since == {"n2": 129.0} and late == {"n2"}  # n1 runs one again: forgotten
