"""The swarm backend's restart of one dyno: whole type or one slot, and how."""

from __future__ import annotations

import pytest

from dynos.core.swarm import TaskView
from dynos.core.swarm_restart import (
    DEFAULT_SOCKET,
    JOB_SOCKET,
    NO_SUCH_CONTAINER,
    SOCKET_LABEL,
    STOP_SCRIPT,
    Replacement,
    force_after_restart,
    force_without_successor,
    job_command,
    job_failure,
    job_name,
    job_state,
    mechanism,
    no_new_task,
    node_socket,
    node_unusable,
    replaced_in_slot,
    socket_path_ok,
    stop_seconds,
    task_status,
    whole_type,
)

CONTAINER = "0d5426ae53119a0f4ad7961d62dd4759cca15063483e5634dadaa4194cf12b93"


def task(
    id: str = "t1", slot: int = 1, node: str = "worker", state: str = "running", **more: str
) -> TaskView:
    container = more.get("container_id", CONTAINER)
    desired = more.get("desired", "running")
    return TaskView(id, slot, node, state, desired, "abc", container_id=container)


def one(task: TaskView | None, whole: bool = False, grace: float = 30.0) -> Replacement:
    return Replacement(task, whole, grace)


def test_a_restart_is_of_the_whole_type_when_no_other_slot_keeps_a_dyno() -> None:
    assert whole_type([])  # a lone dyno, or every dyno of the type stopped together
    assert not whole_type([2])  # web.1 restarted beside web.2


def test_a_whole_type_is_replaced_by_a_forced_update() -> None:
    assert mechanism(one(task(), whole=True), "manager", ()) == "force"


def test_one_slot_s_task_is_stopped_where_it_runs() -> None:
    assert mechanism(one(task(node="manager")), "manager", ()) == "manager"
    assert mechanism(one(task(node="worker")), "manager", ()) == "job"


def test_a_task_that_cannot_be_reached_is_forced() -> None:
    assert mechanism(one(None), "manager", ()) == "force"
    no_container = task(container_id="")
    assert mechanism(one(no_container), "manager", ()) == "force"
    assert mechanism(one(task(node="")), "manager", ()) == "force"
    assert mechanism(one(task()), "manager", {"worker"}) == "force"


def test_a_service_whose_swarm_restarts_failures_only_is_forced() -> None:
    """An adopted service keeps an older server's on-failure policy: a dyno exiting 0 on
    SIGTERM would get no new task."""
    assert mechanism(one(task()), "manager", (), "on-failure") == "force"
    assert mechanism(one(task()), "manager", (), "any") == "job"


def test_a_paused_drained_or_down_node_takes_no_stop_job() -> None:
    def node(availability: str, state: str = "ready") -> dict[str, object]:
        return {"Spec": {"Availability": availability}, "Status": {"State": state}}

    assert node_unusable(node("active")) == ""
    assert node_unusable({}) == ""
    assert node_unusable(node("pause")) == "paused"
    assert node_unusable(node("drain")) == "drained"
    assert node_unusable(node("active", "down")) == "down"


def test_a_node_s_socket_comes_from_its_engine_label() -> None:
    assert node_socket(None) == DEFAULT_SOCKET
    assert node_socket({}) == DEFAULT_SOCKET
    assert node_socket({SOCKET_LABEL: "/run/dynos-lab/node2.sock"}) == "/run/dynos-lab/node2.sock"
    assert node_socket({SOCKET_LABEL: "relative.sock"}) == DEFAULT_SOCKET


def test_only_an_absolute_sock_path_is_mounted_as_a_node_s_socket() -> None:
    assert socket_path_ok("/var/run/docker.sock")
    assert socket_path_ok("/run/dynos-lab/node2.sock")
    for wrong in (
        "/",  # the node's root
        "/etc/shadow",
        "/run/../etc/x.sock",
        "/run/./x.sock",
        "/run/x.sock/",
        "run/x.sock",
        "",
    ):
        assert not socket_path_ok(wrong), wrong
        assert node_socket({SOCKET_LABEL: wrong}) == DEFAULT_SOCKET


def test_the_job_stops_one_container_with_the_grace_rounded_up() -> None:
    command = job_command(CONTAINER, 2.5)
    assert command == ["python3", "-I", "-c", STOP_SCRIPT, CONTAINER, "3", JOB_SOCKET]
    assert job_command(CONTAINER, 0)[5] == "0"
    assert stop_seconds(30) == 30 and stop_seconds(0.1) == 1 and stop_seconds(-1) == 0
    compile(STOP_SCRIPT, "stop", "exec")  # a program python3 runs as it is
    for wrong in ("", "../containers/x", "abc", CONTAINER + "; rm"):
        with pytest.raises(ValueError):
            job_command(wrong, 1)


def test_a_job_s_name_is_a_valid_service_name() -> None:
    name = job_name("abcdef0123456789", "x" * 40)
    assert name.startswith("dynos-abcdef01-restart-") and len(name) <= 63


def test_a_job_is_done_when_its_task_completed_failed_when_it_ended_otherwise() -> None:
    assert job_state([]) == "waiting"
    assert job_state([task(state="starting")]) == "waiting"
    assert job_state([task(state="complete")]) == "done"
    assert job_state([task(state="failed")]) == "failed"
    assert job_state([task(state="rejected")]) == "failed"


def test_a_failed_job_says_why_and_a_missing_container_points_at_the_socket_label() -> None:
    missing = TaskView("j", 1, "worker", "failed", "shutdown", "", exit_code=NO_SUCH_CONTAINER)
    said = job_failure([missing], "/run/dynos-lab/node2.sock")
    assert SOCKET_LABEL in said and "/run/dynos-lab/node2.sock" in said  # the one it used
    refused = TaskView("j", 1, "worker", "failed", "shutdown", "", exit_code=1)
    assert job_failure([refused], DEFAULT_SOCKET).endswith("exit status 1")
    rejected = TaskView("j", 1, "worker", "rejected", "shutdown", "", error="no such image")
    assert job_failure([rejected], DEFAULT_SOCKET).endswith("no such image")


def test_a_job_s_task_is_logged_with_its_state_error_and_message() -> None:
    engine_task = {
        "ID": "j1",
        "Status": {"State": "rejected", "Err": "no such image", "Message": "preparing"},
    }
    assert task_status(engine_task) == "task j1: rejected, no such image, preparing"
    assert task_status({"ID": "j2", "Status": {"State": "pending"}}) == "task j2: pending"
    assert task_status({}) == "task ?: no status"


def test_swarm_s_replacement_is_another_live_task_of_the_slot() -> None:
    old = task("old", slot=1)
    assert not replaced_in_slot(old, [old])
    assert not replaced_in_slot(old, [old, task("other", slot=2)])
    assert not replaced_in_slot(old, [old, task("gone", slot=1, state="shutdown")])
    assert replaced_in_slot(old, [task("old", state="complete"), task("new", state="ready")])
    assert replaced_in_slot(old, [task("new", slot=1)])
    # One Swarm is shutting down (an update's, a scale-down's) takes no place.
    assert not replaced_in_slot(old, [old, task("going", state="running", desired="shutdown")])
    assert replaced_in_slot(old, [old, task("new", state="assigned", desired="ready")])


def test_no_new_task_names_swarm_s_restart_limit_that_restarts_share_with_crashes() -> None:
    said = no_new_task(3, 20.0, 3, 60 * 10**9)
    assert "slot 3 within 20 s" in said
    assert "restart limit of 3 in 60 s for this slot" in said


def test_a_failed_restart_forces_only_a_slot_that_still_has_a_dyno_waiting() -> None:
    assert force_after_restart(1, {1, 2}, claimed=False)
    # Its successor took a task already (Swarm's new one, its node down): forcing would
    # restart it, and every other dyno, for nothing.
    assert not force_after_restart(1, {1, 2}, claimed=True)
    # Scaled down, stopped or idled meanwhile: no dyno wants the slot.
    assert not force_after_restart(3, {1, 2}, claimed=False)
    assert not force_after_restart(1, {2}, claimed=False)


def test_a_slot_whose_successor_never_started_is_forced_only_within_the_replicas() -> None:
    assert force_without_successor(1, [2])  # web.1 restarted beside web.2, never restarted
    assert force_without_successor(2, [1, 3])
    # ps:restart web.3 then ps:scale web=2 before its successor started: fewer replicas
    # end its task, web.1 and web.2 keep theirs.
    assert not force_without_successor(3, [1, 2])
    assert not force_without_successor(1, [])
