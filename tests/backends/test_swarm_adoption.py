"""A dead server's service adopted (backends/swarm_adoption.adopted_service): the first sync
sends the TaskTemplate the service has, so that Swarm replaces none of its tasks, though
this server's defaults (restart condition any) or --stop-grace differ from the older one's.
Pure: the engine API's arguments compared, as service_body makes them for both servers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dynos.backends.swarm_adoption import adopted_service
from dynos.backends.swarm_engine import SwarmService, service_body
from dynos.core.sizes import find_size
from dynos.core.swarm import NANO, ServiceSpec, service_spec


def made(stop_grace: float = 30.0) -> ServiceSpec:
    return service_spec(
        name="dynos-abcdef01-shop-web",
        image="127.0.0.1:5000/dynos/shop@sha256:" + "0" * 64,
        command=["sh", "-c", "exec python3 app.py"],
        env={"GREETING": "hi"},
        process_type="web",
        size=find_size("standard-1x"),
        replicas=0,
        web=True,
        labels={"io.dynos.app": "shop"},
        stop_grace=stop_grace,
        user="1000:1000",
        workdir="/app",
        network="dynos-abcdef01-app-net",
        constraints=["node.labels.dynos-abcdef01==guarded"],
    )


def left_by(older: ServiceSpec, replicas: int, force: int) -> dict[str, Any]:
    """The older server's service as the engine lists it: what it sent."""
    body = service_body(older, replicas, force)
    return {
        "ID": "svc1",
        "Spec": {
            "TaskTemplate": dict(body["task_template"]),
            "Mode": {"Replicated": {"Replicas": replicas}},
        },
    }


def test_the_first_sync_of_an_adopted_service_sends_the_task_template_it_has() -> None:
    older = replace(made(stop_grace=10.0), restart_condition="on-failure")
    left = left_by(older, replicas=2, force=3)
    wanted = made()  # this server: condition any, a 30 s grace
    assert service_body(wanted, 2, 3)["task_template"] != left["Spec"]["TaskTemplate"]
    service = adopted_service(wanted, left)
    assert (service.id, service.force, service.floor) == ("svc1", 3, 2)
    sent = service_body(service.wanted, 2, service.force)["task_template"]
    assert sent == left["Spec"]["TaskTemplate"]
    # Each later start of the type's dynos asks for this server's spec again: still kept.
    assert service_body(service.spec(made()), 2, 3)["task_template"] == sent


def test_a_service_this_server_makes_has_its_own_defaults() -> None:
    service = SwarmService("dynos-abcdef01-shop-web", made())
    assert service.spec(made()).restart_condition == "any"
    assert service.spec(made(stop_grace=5.0)).stop_grace_ns == 5 * NANO
