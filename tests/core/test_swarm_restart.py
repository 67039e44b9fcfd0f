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
    job_command,
    job_failure,
    job_name,
    job_state,
    mechanism,
    node_socket,
    replaced_in_slot,
    stop_seconds,
    whole_type,
)

CONTAINER = "0d5426ae53119a0f4ad7961d62dd4759cca15063483e5634dadaa4194cf12b93"


def task(
    id: str = "t1", slot: int = 1, node: str = "worker", state: str = "running", **more: str
) -> TaskView:
    container = more.get("container_id", CONTAINER)
    return TaskView(id, slot, node, state, "running", "abc", container_id=container)


def test_a_restart_is_of_the_whole_type_when_no_other_slot_keeps_a_dyno() -> None:
    assert whole_type([])  # a lone dyno, or every dyno of the type stopped together
    assert not whole_type([2])  # web.1 restarted beside web.2


def test_a_whole_type_is_replaced_by_a_forced_update() -> None:
    assert mechanism(Replacement(task(), whole=True), "manager", ()) == "force"


def test_one_slot_s_task_is_stopped_where_it_runs() -> None:
    assert mechanism(Replacement(task(node="manager"), whole=False), "manager", ()) == "manager"
    assert mechanism(Replacement(task(node="worker"), whole=False), "manager", ()) == "job"


def test_a_task_that_cannot_be_reached_is_forced() -> None:
    assert mechanism(Replacement(None, whole=False), "manager", ()) == "force"
    no_container = task(container_id="")
    assert mechanism(Replacement(no_container, whole=False), "manager", ()) == "force"
    assert mechanism(Replacement(task(node=""), whole=False), "manager", ()) == "force"
    assert mechanism(Replacement(task(), whole=False), "manager", {"worker"}) == "force"


def test_a_node_s_socket_comes_from_its_engine_label() -> None:
    assert node_socket(None) == DEFAULT_SOCKET
    assert node_socket({}) == DEFAULT_SOCKET
    assert node_socket({SOCKET_LABEL: "/run/dynos-lab/node2.sock"}) == "/run/dynos-lab/node2.sock"
    assert node_socket({SOCKET_LABEL: "relative.sock"}) == DEFAULT_SOCKET


def test_the_job_stops_one_container_with_the_grace_rounded_up() -> None:
    command = job_command(CONTAINER, 2.5)
    assert command == ["python3", "-c", STOP_SCRIPT, CONTAINER, "3", JOB_SOCKET]
    assert job_command(CONTAINER, 0)[4] == "0"
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
    assert SOCKET_LABEL in job_failure([missing])
    refused = TaskView("j", 1, "worker", "failed", "shutdown", "", exit_code=1)
    assert job_failure([refused]).endswith("exit status 1")
    rejected = TaskView("j", 1, "worker", "rejected", "shutdown", "", error="no such image")
    assert job_failure([rejected]).endswith("no such image")


def test_swarm_s_replacement_is_another_live_task_of_the_slot() -> None:
    old = task("old", slot=1)
    assert not replaced_in_slot(old, [old])
    assert not replaced_in_slot(old, [old, task("other", slot=2)])
    assert not replaced_in_slot(old, [old, task("gone", slot=1, state="shutdown")])
    assert replaced_in_slot(old, [task("old", state="complete"), task("new", state="ready")])
    assert replaced_in_slot(old, [task("new", slot=1)])
