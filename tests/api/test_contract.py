"""Every answer of every Heroku endpoint dynos serves conforms to the reference schema.

Each case names the schema link (definition and title) that documents its endpoint; the
answer must validate against that link's target schema (tests/api/contract.py says what is
relaxed and why). The cases run in order against one app on one real server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dynos.testing.harness import RunningServer, dyno_states, wait_for
from tests.api.conftest import deploy_envecho
from tests.api.contract import problems

APP = "contract"


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # with {app_id}, {release_id}, {formation_id}, {dyno_id}, {size_id}
    definition: str
    title: str
    status: int = 200
    body: dict[str, Any] | None = None
    settled: bool = False  # wait for web.1 and worker.1 up first (earlier cases restart them)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


# A drain nobody receives (the name does not resolve here): its answers are what is checked.
DRAIN = "https://logs.example.com/contract"
DRAIN_PATH = "https:%2F%2Flogs.example.com%2Fcontract"
PREBOOT_ON, PREBOOT_OFF = {"enabled": True}, {"enabled": False}
CASES = [
    Case("GET", "/account", "account", "Info"),
    Case("GET", "/apps", "app", "List"),
    Case("GET", "/users/~/apps", "app", "List Owned and Collaborated"),
    Case("POST", "/apps", "app", "Create", 201, {"name": "contract-new"}),
    Case("GET", f"/apps/{APP}", "app", "Info"),
    Case("GET", "/apps/{app_id}", "app", "Info"),
    Case("PATCH", "/apps/contract-new", "app", "Update", body={"name": "contract-renamed"}),
    Case("DELETE", "/apps/contract-renamed", "app", "Delete"),
    # Read the dynos before anything below restarts them (a restarted dyno is a new one).
    Case("GET", f"/apps/{APP}/dynos", "dyno", "List"),
    Case("GET", f"/apps/{APP}/dynos/web.1", "dyno", "Info"),
    Case("GET", f"/apps/{APP}/dynos/{{dyno_id}}", "dyno", "Info"),
    Case("GET", f"/apps/{APP}/releases", "release", "List"),
    Case("GET", f"/apps/{APP}/releases/2", "release", "Info"),
    Case("GET", f"/apps/{APP}/releases/{{release_id}}", "release", "Info"),
    Case("GET", f"/apps/{APP}/releases/2/config-vars", "config-var", "Info for App Release"),
    Case("GET", f"/apps/{APP}/config-vars", "config-var", "Info for App"),
    Case("PATCH", f"/apps/{APP}/config-vars", "config-var", "Update", body={"GREETING": "hi"}),
    Case("POST", f"/apps/{APP}/releases", "release", "Rollback", 201, {"release": "{release_id}"}),
    Case("GET", f"/apps/{APP}/formation", "formation", "List"),
    Case("GET", f"/apps/{APP}/formation/web", "formation", "Info"),
    Case("GET", f"/apps/{APP}/formation/{{formation_id}}", "formation", "Info"),
    Case(
        "PATCH",
        f"/apps/{APP}/formation",
        "formation",
        "Batch Update",
        body={"updates": [{"type": "worker", "quantity": "1", "size": "standard-1x"}]},
    ),
    Case("PATCH", f"/apps/{APP}/formation/worker", "formation", "Update", body={"quantity": 1}),
    Case("POST", f"/apps/{APP}/dynos/web.1/actions/stop", "dyno", "Stop", 202, settled=True),
    Case("DELETE", f"/apps/{APP}/dynos/worker.1", "dyno", "Restart", 202, settled=True),
    Case("DELETE", f"/apps/{APP}/dynos", "dyno", "Restart all", 202),
    # Not in the published schema (the heroku CLI's ps:restart -p / ps:stop -p use them):
    # they answer what their per-dyno counterparts answer.
    Case("DELETE", f"/apps/{APP}/formations/worker", "dyno", "Restart all", 202),
    Case("POST", f"/apps/{APP}/formations/worker/actions/stop", "dyno", "Stop", 202),
    Case("POST", f"/apps/{APP}/log-sessions", "log-session", "Create", 201, {"lines": 10}),
    Case("POST", f"/apps/{APP}/log-drains", "log-drain", "Create", 201, {"url": DRAIN}),
    Case("GET", f"/apps/{APP}/log-drains", "log-drain", "List"),
    Case("GET", f"/apps/{APP}/log-drains/{DRAIN_PATH}", "log-drain", "Info"),
    Case("DELETE", f"/apps/{APP}/log-drains/{DRAIN_PATH}", "log-drain", "Delete"),
    Case("GET", "/dyno-sizes", "dyno-size", "List"),
    Case("GET", "/dyno-sizes/standard-2x", "dyno-size", "Info"),
    Case("GET", "/dyno-sizes/{size_id}", "dyno-size", "Info"),
    Case("GET", f"/apps/{APP}/collaborators", "collaborator", "List"),
    Case("GET", f"/apps/{APP}/features", "app-feature", "List"),
    Case("GET", f"/apps/{APP}/features/preboot", "app-feature", "Info"),
    Case("PATCH", f"/apps/{APP}/features/preboot", "app-feature", "Update", body={"enabled": True}),
    Case(
        "PATCH", f"/apps/{APP}/features/preboot", "app-feature", "Update", body={"enabled": False}
    ),
    Case("GET", f"/apps/{APP}/addons", "add-on", "List By App"),
    Case("GET", f"/apps/{APP}/domains", "domain", "List"),
    Case(
        "POST",
        f"/apps/{APP}/domains",
        "domain",
        "Create",
        201,
        {"hostname": "www.contract.example", "sni_endpoint": None},
    ),
    Case("GET", f"/apps/{APP}/domains/www.contract.example", "domain", "Info"),
    Case(
        "PATCH",
        f"/apps/{APP}/domains/www.contract.example",
        "domain",
        "Update",
        body={"sni_endpoint": None},
    ),
    Case("DELETE", f"/apps/{APP}/domains/www.contract.example", "domain", "Delete"),
    # Last: a database releases the app (its dynos restart).
    Case("POST", f"/apps/{APP}/addons", "add-on", "Create", 201, {"plan": "heroku-postgresql"}),
    Case("GET", f"/apps/{APP}/addons/DATABASE", "add-on", "Info By App"),
    Case("GET", "/addon-attachments", "add-on-attachment", "List"),
    Case("GET", f"/apps/{APP}/addon-attachments", "add-on-attachment", "List by App"),
    Case("GET", f"/apps/{APP}/addon-attachments/DATABASE", "add-on-attachment", "Info by App"),
    Case(
        "POST",
        "/actions/addon-attachments/resolve",
        "add-on-attachment",
        "Resolution",
        body={"addon_attachment": "DATABASE", "app": APP},
    ),
    Case(
        "POST",
        "/actions/addons/resolve",
        "add-on",
        "Resolution",
        body={"addon": "DATABASE", "app": APP},
    ),
]


def all_up(server: RunningServer) -> bool:
    return dyno_states(server, APP) == {"web.1": "up", "worker.1": "up"}


@pytest.fixture(scope="module")
def ids(server: RunningServer, api: httpx.Client) -> dict[str, str]:
    deploy_envecho(server, api, APP)
    app = api.get(f"/apps/{APP}").json()
    return {
        "app_id": app["id"],
        "release_id": api.get(f"/apps/{APP}/releases/2").json()["id"],
        "formation_id": api.get(f"/apps/{APP}/formation/web").json()["id"],
        "dyno_id": api.get(f"/apps/{APP}/dynos/web.1").json()["id"],
        "size_id": api.get("/dyno-sizes").json()[0]["id"],
    }


@pytest.mark.parametrize("case", CASES, ids=str)
def test_answer_conforms_to_the_schema(
    case: Case, server: RunningServer, api: httpx.Client, ids: dict[str, str]
) -> None:
    if case.settled:
        wait_for(lambda: all_up(server), what=f"{APP}'s dynos up")
    body = case.body
    if body is not None:
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    response = api.request(case.method, case.path.format(**ids), json=body)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    assert problems(response.json(), case.definition, case.title) == []


def test_one_off_dyno_answer_conforms_to_the_schema(api: httpx.Client, ids: dict[str, str]) -> None:
    response = api.post(f"/apps/{APP}/dynos", json={"command": "echo hi", "attach": False})
    if response.status_code == 405:
        pytest.skip("POST /apps/{app}/dynos (one-off dynos, issue 6) is not mounted yet")
    assert response.status_code == 201, response.text
    assert problems(response.json(), "dyno", "Create") == []
