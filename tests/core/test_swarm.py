"""The swarm backend's pure rules: a type's service spec, tasks as dynos."""

from __future__ import annotations

import pytest

from dynos.core.containers import size_limits
from dynos.core.sizes import find_size
from dynos.core.swarm import (
    NANO,
    SERVICE_PORT,
    TEMPLATE_LABEL,
    Claims,
    TaskView,
    dyno_slot,
    exit_status,
    kept_instead,
    kept_on_adoption,
    replicas_for,
    service_name,
    service_spec,
    task_view,
)


def spec(**changes: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "name": "dynos-abcdef01-shop-web",
        "image": "127.0.0.1:5000/dynos/shop:slug-1",
        "command": ["sh", "-c", "exec python3 app.py"],
        "env": {"DYNO": "web.3", "PORT": "43210", "GREETING": "hi"},
        "process_type": "web",
        "size": find_size("standard-2x"),
        "replicas": 3,
        "web": True,
        "labels": {"io.dynos.app": "shop"},
        "stop_grace": 30.0,
        "user": "1000:1000",
        "workdir": "/app",
    }
    arguments.update(changes)
    return service_spec(**arguments)  # type: ignore[arg-type]


def test_service_names_are_valid_and_unique_per_server_app_and_type() -> None:
    name = service_name("abcdef0123456789", "shop", "web")
    assert name == "dynos-abcdef01-shop-web"
    assert service_name("abcdef0123456789", "shop", "worker") != name
    assert service_name("99999999aaaa", "shop", "web") != name
    long = service_name("abcdef0123456789", "a" * 40, "Some_Type" * 5)
    assert len(long) <= 63 and not long.endswith("-")
    assert set(long) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_a_dyno_name_is_its_type_and_slot() -> None:
    assert dyno_slot("web.2") == ("web", 2)
    assert dyno_slot("my.worker.10") == ("my.worker", 10)
    for bad in ("web", "web.0", "web.x", ".3", "run."):
        with pytest.raises(ValueError):
            dyno_slot(bad)


def test_the_size_becomes_the_service_limits() -> None:
    size = find_size("standard-2x")
    made = spec(size=size)
    assert made.mem_limit == size_limits(size).mem_limit == 2 * 1024 * 1024 * 1024
    assert made.nano_cpus == 2 * NANO
    assert made.pids_limit == size.max_processes


def test_dyno_comes_from_the_task_slot_and_port_is_the_same_in_every_web_task() -> None:
    env = dict(item.split("=", 1) for item in spec().env)
    assert env["DYNO"] == "web.{{.Task.Slot}}"
    assert env["PORT"] == str(SERVICE_PORT)
    assert env["GREETING"] == "hi"
    assert spec().target_port == SERVICE_PORT
    worker = spec(process_type="worker", web=False, env={"DYNO": "worker.1"})
    assert "PORT" not in dict(item.split("=", 1) for item in worker.env)
    assert worker.target_port is None


def test_restarts_back_off_and_updates_start_new_tasks_first() -> None:
    made = spec()
    assert made.restart_condition == "any"  # a dyno's restart: its container stopped
    assert made.restart_delay_ns > 0 and made.restart_attempts > 0
    assert made.update_order == "start-first" and made.update_parallelism == 1
    assert made.endpoint_mode == "dnsrr"  # no VIP: the kernel lacks IPVS
    assert made.stop_grace_ns == 30 * NANO


def test_an_adopted_service_keeps_the_restart_policy_and_grace_it_was_made_with() -> None:
    """An older server's service (on-failure, another grace): what this server would send
    differs only by its defaults and settings, which would have Swarm replace every task."""
    left = {
        "RestartPolicy": {
            "Condition": "on-failure",
            "Delay": 5 * NANO,
            "MaxAttempts": 4,
            "Window": 30 * NANO,
        },
        "ContainerSpec": {"Image": "x", "StopGracePeriod": 10 * NANO},
    }
    kept = kept_on_adoption(spec(), left)
    assert kept.restart_condition == "on-failure"
    assert (kept.restart_delay_ns, kept.restart_attempts) == (5 * NANO, 4)
    assert kept.restart_window_ns == 30 * NANO and kept.stop_grace_ns == 10 * NANO
    assert kept.template == spec().template and kept.image == spec().image  # nothing else
    # What the engine does not show, or shows as no known value, stays ours.
    partial = kept_on_adoption(spec(), {"RestartPolicy": {"Condition": "sometimes"}})
    assert partial == spec()
    assert kept_on_adoption(spec(), {}) == spec()


def test_the_template_changes_with_the_release_config_and_size_not_with_the_dyno() -> None:
    base = spec().template
    assert spec(env={"DYNO": "web.1", "PORT": "40000", "GREETING": "hi"}).template == base
    assert spec(image="127.0.0.1:5000/dynos/shop:slug-2").template != base
    assert spec(env={"GREETING": "hello"}).template != base
    assert spec(size=find_size("standard-1x")).template != base
    assert spec(command=["python3", "other.py"]).template != base
    assert spec().container_labels[TEMPLATE_LABEL] == base
    assert spec().name == f"dynos-abcdef01-shop-web-{base[:8]}"
    assert len(spec(name="x" * 63).name) <= 63
    assert "io.dynos.server" not in spec().container_labels  # docker's leftovers, not these


def engine_task(**changes: object) -> dict[str, object]:
    task: dict[str, object] = {
        "ID": "t1",
        "Slot": 2,
        "NodeID": "n2",
        "DesiredState": "running",
        "Spec": {"ContainerSpec": {"Labels": {TEMPLATE_LABEL: "abc"}}},
        "Status": {
            "State": "running",
            "PortStatus": {
                "Ports": [{"TargetPort": 5000, "PublishedPort": 30001, "PublishMode": "host"}]
            },
            "ContainerStatus": {"ContainerID": "c1", "ExitCode": 0},
        },
    }
    task.update(changes)
    return task


def test_an_engine_task_becomes_a_task_view() -> None:
    view = task_view(engine_task())
    assert view == TaskView("t1", 2, "n2", "running", "running", "abc", 30001, 0, "", "c1")
    assert view.running and not view.ended
    failed = task_view(
        engine_task(
            DesiredState="shutdown",
            Status={
                "State": "failed",
                "Err": "task: non-zero exit (3)",
                "ContainerStatus": {"ExitCode": 3},
            },
        )
    )
    assert failed.ended and not failed.running
    assert failed.published_port is None
    assert failed.container_id == ""  # the node made none: no container to stop
    assert exit_status(failed) == 3
    assert task_view({}).slot == 0  # what an engine leaves out is no crash


def test_exit_status_without_a_code() -> None:
    assert exit_status(TaskView("t", 1, "n", "rejected", "shutdown", "x")) == 1
    assert exit_status(TaskView("t", 1, "n", "shutdown", "shutdown", "x")) == 0


def running(task_id: str, slot: int, template: str = "abc") -> TaskView:
    return TaskView(task_id, slot, "n1", "running", "running", template, 30000 + slot)


def test_a_dyno_claims_a_running_task_of_its_slot_and_template() -> None:
    claims = Claims()
    tasks = [running("a", 1), running("b", 2), running("c", 2, template="old")]
    assert claims.claim("k2", 2, "abc", tasks) == tasks[1]
    assert claims.claim("k2", 2, "abc", tasks) == tasks[1]  # kept
    assert claims.claim("k3", 3, "abc", tasks) is None  # not yet scheduled
    pending = TaskView("d", 3, "n1", "starting", "running", "abc")
    assert claims.claim("k3", 3, "abc", [*tasks, pending]) is None


def test_a_restarted_dyno_waits_for_a_new_task_of_its_slot() -> None:
    claims = Claims()
    old = running("a", 1)
    assert claims.claim("old", 1, "abc", [old]) == old
    # The old key is stopping: its task stays its own until it is gone.
    assert claims.claim("new", 1, "abc", [old]) is None
    replacement = running("b", 1)
    assert claims.claim("new", 1, "abc", [old, replacement]) == replacement
    claims.release("old")
    assert claims.by_key == {"new": "b"}


def test_a_stopped_dyno_s_task_is_retired_while_it_still_runs() -> None:
    claims = Claims()
    old = running("a", 1)
    assert claims.claim("old", 1, "abc", [old]) == old
    claims.release("old", retire=True)  # out of the router; Swarm replaces it soon
    assert claims.claim("new", 1, "abc", [old]) is None
    fresh = running("b", 1)
    assert claims.claim("new", 1, "abc", [old, fresh]) == fresh


def test_swarm_scaling_down_by_another_slot_hands_the_kept_task_to_that_dyno() -> None:
    """web=3 to web=2: the manager stops web.3, Swarm (by node balance) ends slot 2's task and
    keeps slot 3's. The stopped dyno is done once Swarm wants only 2 tasks; web.2's restart
    takes slot 3's task, the only one left above the replicas."""
    claims = Claims()
    one, two, three = running("a", 1), running("b", 2), running("c", 3)
    for key, task in (("web.1", one), ("web.2", two), ("web.3", three)):
        assert claims.claim(key, task.slot, "abc", [one, two, three], 3) == task
    # Before Swarm has chosen: three tasks wanted, none kept instead yet.
    assert not kept_instead(3, [1, 2], three, [one, two, three])
    ended = TaskView("b", 2, "n1", "running", "shutdown", "abc")
    assert kept_instead(3, [1, 2], three, [one, ended, three])
    assert not kept_instead(1, [1, 2], one, [one, ended, three])  # a staying slot
    # web.2's task ended: it restarts; slot 3's task is web.3's until web.3 lets it go.
    claims.release("web.2")
    gone = TaskView("b", 2, "n1", "shutdown", "shutdown", "abc")
    assert claims.claim("web.2", 2, "abc", [one, gone, three], 2) is None
    claims.release("web.3")
    assert claims.claim("web.2", 2, "abc", [one, gone, three], 2) == three
    # Swarm ended slot 3 as asked: nothing is kept instead, and its task is no spare.
    shutting = TaskView("c", 3, "n1", "running", "shutdown", "abc")
    assert not kept_instead(3, [1, 2], shutting, [one, two, shutting])
    assert Claims().claim("web.2", 2, "abc", [one, shutting], 2) is None


def test_a_spare_task_goes_only_to_a_dyno_within_the_replicas_and_its_own_slot_first() -> None:
    spare, own = running("z", 4), running("y", 2)
    assert Claims().claim("web.2", 2, "abc", [spare, own], 2) == own
    assert Claims().claim("web.3", 3, "abc", [spare], 2) is None  # above the replicas itself
    assert Claims().claim("web.2", 2, "abc", [spare]) is None  # replicas unknown: none
    assert Claims().claim("web.2", 2, "old", [spare], 2) is None  # another release's


def test_replicas_cover_the_highest_slot() -> None:
    assert replicas_for([1, 2, 3]) == 3
    assert replicas_for([2]) == 2
    assert replicas_for([]) == 0
