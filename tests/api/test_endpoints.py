"""What the endpoints do, over real HTTP against a real server: paging, addressing by name
and by id, rollback, restarts, log sessions, and Heroku's error ids and statuses."""

from __future__ import annotations

import base64

import httpx
import pytest

from dynos.testing.harness import RunningServer, dyno_states, wait_for, wait_for_dynos
from tests.api.conftest import SETTLE_TIMEOUT, deploy_envecho

APP = "endpoints"


@pytest.fixture(scope="module")
def app(server: RunningServer, api: httpx.Client) -> str:
    deploy_envecho(server, api, APP)
    return APP


def settle(server: RunningServer, app: str) -> None:
    """Wait for web.1 and worker.1 up: config changes and resizes above restart them."""
    wait_for_dynos(server, app, {"web.1": "up", "worker.1": "up"}, SETTLE_TIMEOUT)


def release_versions(response: httpx.Response) -> list[int]:
    return [r["version"] for r in response.json()]


def add_releases(api: httpx.Client, app: str, count: int) -> None:
    for n in range(count):
        assert api.patch(f"/apps/{app}/config-vars", json={"N": str(n)}).status_code == 200


# -- paging ------------------------------------------------------------------------------------


def test_list_without_range_is_whole_and_says_how_it_pages(api: httpx.Client, app: str) -> None:
    response = api.get(f"/apps/{app}/releases")
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "version, id"
    assert "next-range" not in response.headers
    assert release_versions(response) == sorted(release_versions(response))


def test_partial_page_is_206_with_next_range(api: httpx.Client, app: str) -> None:
    add_releases(api, app, 3)
    response = api.get(f"/apps/{app}/releases", headers={"Range": "version ..; max=2"})
    assert response.status_code == 206
    assert release_versions(response) == [1, 2]
    assert response.headers["next-range"] == "version ]2..; max=2, order=asc"


def test_following_next_range_reaches_every_release_once(api: httpx.Client, app: str) -> None:
    everything = release_versions(api.get(f"/apps/{app}/releases"))
    seen: list[int] = []
    headers = {"Range": "version ..; max=2, order=desc"}
    while True:
        response = api.get(f"/apps/{app}/releases", headers=headers)
        seen += release_versions(response)
        if response.status_code == 200:
            break
        headers = {"Range": response.headers["next-range"]}
    assert seen == sorted(everything, reverse=True)


def test_newest_release_is_the_first_of_a_descending_range(api: httpx.Client, app: str) -> None:
    response = api.get(f"/apps/{app}/releases", headers={"Range": "version ..; order=desc,max=1"})
    newest = max(release_versions(api.get(f"/apps/{app}/releases")))
    assert release_versions(response) == [newest]
    assert response.json()[0]["current"] is True


def test_range_on_an_unknown_field_is_416(api: httpx.Client, app: str) -> None:
    response = api.get(f"/apps/{app}/releases", headers={"Range": "size ..; max=2"})
    assert response.status_code == 416
    assert response.json()["id"] == "requested_range_not_satisfiable"


# -- addressing by name and by id ----------------------------------------------------------------


def test_app_by_name_and_by_id_is_the_same_app(api: httpx.Client, app: str) -> None:
    by_name = api.get(f"/apps/{app}").json()
    assert api.get(f"/apps/{by_name['id']}").json() == by_name


def test_release_by_version_v_version_and_id(api: httpx.Client, app: str) -> None:
    release = api.get(f"/apps/{app}/releases/2").json()
    assert api.get(f"/apps/{app}/releases/v2").json() == release
    assert api.get(f"/apps/{app}/releases/{release['id']}").json() == release


def test_formation_by_type_and_by_id(api: httpx.Client, app: str) -> None:
    entry = api.get(f"/apps/{app}/formation/web").json()
    assert api.get(f"/apps/{app}/formation/{entry['id']}").json() == entry
    updated = api.patch(f"/apps/{app}/formation/{entry['id']}", json={"size": "standard-1x"})
    assert updated.json()["type"] == "web"


def test_dyno_by_name_and_by_id(server: RunningServer, api: httpx.Client, app: str) -> None:
    settle(server, app)

    def same_dyno_by_id() -> bool:
        # A restart the tests above asked for may replace worker.1 (a new id) between the
        # two reads; the lookup by id must then find the dyno that is worker.1 now.
        dyno = api.get(f"/apps/{app}/dynos/worker.1").json()
        return api.get(f"/apps/{app}/dynos/{dyno['id']}").json().get("name") == "worker.1"

    wait_for(same_dyno_by_id, what="worker.1 found by its id")


def test_size_by_name_alias_and_id(api: httpx.Client) -> None:
    size = api.get("/dyno-sizes/standard-2x").json()
    assert size["name"] == "Standard-2X"
    assert api.get("/dyno-sizes/2X").json() == size
    assert api.get(f"/dyno-sizes/{size['id']}").json() == size


def test_own_apps_by_tilde_id_or_email(api: httpx.Client, app: str) -> None:
    account = api.get("/account").json()
    for user in ("~", account["id"], account["email"]):
        assert app in [a["name"] for a in api.get(f"/users/{user}/apps").json()]


# -- formation ---------------------------------------------------------------------------------


def test_batch_update_takes_string_quantities_and_size_aliases(api: httpx.Client, app: str) -> None:
    updates = [{"type": "worker", "quantity": "+1", "size": "standard-2x"}]
    response = api.patch(f"/apps/{app}/formation", json={"updates": updates})
    assert response.json() == [response.json()[0]]
    assert response.json()[0]["quantity"] == 2 and response.json()[0]["size"] == "Standard-2X"
    updates = [{"type": "worker", "quantity": "-1", "size": "1X"}]
    response = api.patch(f"/apps/{app}/formation", json={"updates": updates})
    assert response.json()[0]["quantity"] == 1 and response.json()[0]["size"] == "Standard-1X"


# -- rollback -------------------------------------------------------------------------------------


def test_rollback_releases_the_old_slug_and_config_and_keeps_the_formation(
    server: RunningServer, api: httpx.Client
) -> None:
    deploy_envecho(server, api, "rollback")
    assert api.patch("/apps/rollback/config-vars", json={"COLOR": "red"}).status_code == 200
    before = api.get("/apps/rollback/releases/3").json()
    assert api.patch("/apps/rollback/config-vars", json={"COLOR": "blue"}).status_code == 200
    formation = api.get("/apps/rollback/formation").json()

    response = api.post("/apps/rollback/releases", json={"release": before["id"]})

    assert response.status_code == 201
    release = response.json()
    assert (release["version"], release["description"]) == (5, "Rollback to v3")
    assert release["slug"] == before["slug"] and release["current"] is True
    assert api.get("/apps/rollback/config-vars").json()["COLOR"] == "red"
    assert [(f["type"], f["quantity"]) for f in api.get("/apps/rollback/formation").json()] == [
        (f["type"], f["quantity"]) for f in formation
    ]
    wait_for(
        lambda: (
            {d["release"]["version"] for d in api.get("/apps/rollback/dynos").json()} == {5}
            and set(dyno_states(server, "rollback").values()) == {"up"}
        ),
        SETTLE_TIMEOUT,
        "dynos restarted on the rolled-back release",
    )


def test_rollback_to_a_release_without_code_is_invalid(api: httpx.Client, app: str) -> None:
    response = api.post(f"/apps/{app}/releases", json={"release": "1"})
    assert response.status_code == 422
    assert response.json()["id"] == "invalid_params"


def test_release_config_vars_are_that_releases(api: httpx.Client, app: str) -> None:
    assert api.get(f"/apps/{app}/releases/2/config-vars").json() == {}


# -- restarts and stops ------------------------------------------------------------------------


def worker_replaced(server: RunningServer, api: httpx.Client, app: str, before: str) -> None:
    def replaced() -> bool:
        response = api.get(f"/apps/{app}/dynos/worker.1")
        return response.status_code == 200 and response.json()["id"] != before

    wait_for(replaced, SETTLE_TIMEOUT, "worker.1 replaced by a new dyno")
    settle(server, app)


def test_restarting_a_process_type_replaces_its_dynos(
    server: RunningServer, api: httpx.Client, app: str
) -> None:
    settle(server, app)
    before = api.get(f"/apps/{app}/dynos/worker.1").json()["id"]
    assert api.delete(f"/apps/{app}/formations/worker").status_code == 202
    worker_replaced(server, api, app, before)


def test_stopping_a_formation_dyno_starts_it_again(
    server: RunningServer, api: httpx.Client, app: str
) -> None:
    settle(server, app)
    before = api.get(f"/apps/{app}/dynos/worker.1").json()["id"]
    assert api.post(f"/apps/{app}/dynos/worker.1/actions/stop").status_code == 202
    worker_replaced(server, api, app, before)


def test_restarting_an_unknown_type_is_not_found(api: httpx.Client, app: str) -> None:
    assert api.delete(f"/apps/{app}/formations/clock").status_code == 404
    assert api.post(f"/apps/{app}/formations/clock/actions/stop").status_code == 404


# -- log sessions ----------------------------------------------------------------------------------


def test_log_session_url_streams_plain_text_without_the_token(api: httpx.Client, app: str) -> None:
    session = api.post(f"/apps/{app}/log-sessions", json={"lines": 5, "source": "app"}).json()
    response = httpx.get(session["logplex_url"])
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 0 < len(lines) <= 5
    assert all(" app[" in line for line in lines)


def test_log_session_url_streams_events_to_an_event_source(api: httpx.Client, app: str) -> None:
    session = api.post(f"/apps/{app}/log-sessions", json={"lines": 3, "dyno": "web"}).json()
    response = httpx.get(session["logplex_url"], headers={"Accept": "text/event-stream"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert len(events) == 3
    assert all(e.startswith("data: ") and "[web." in e for e in events)


def test_log_session_url_is_built_from_the_address_the_client_used(
    server: RunningServer, app: str
) -> None:
    url = server.api_url.replace("127.0.0.1", "localhost")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {server.token}"}) as api:
        session = api.post(f"/apps/{app}/log-sessions", json={}).json()
    assert session["logplex_url"].startswith(url + "/log-sessions/")


# -- errors ----------------------------------------------------------------------------------------


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"id", "message"} and body["message"]
    return response.status_code, body["id"]


def test_missing_or_wrong_token_is_unauthorized(server: RunningServer) -> None:
    assert error_of(httpx.get(f"{server.api_url}/apps")) == (401, "unauthorized")
    wrong = {"Authorization": "Bearer nope"}
    assert error_of(httpx.get(f"{server.api_url}/apps", headers=wrong)) == (401, "unauthorized")


def test_basic_auth_with_the_token_as_password_is_accepted(server: RunningServer) -> None:
    basic = base64.b64encode(f":{server.token}".encode()).decode()
    response = httpx.get(f"{server.api_url}/account", headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200


def test_another_users_apps_are_forbidden(api: httpx.Client) -> None:
    assert error_of(api.get("/users/someone@example.com/apps")) == (403, "forbidden")


def test_unknown_things_are_not_found(api: httpx.Client, app: str) -> None:
    for path in ("/apps/nope", f"/apps/{app}/releases/99", f"/apps/{app}/dynos/web.9"):
        assert error_of(api.get(path)) == (404, "not_found")
    assert error_of(api.get(f"/apps/{app}/formation/clock")) == (404, "not_found")
    assert error_of(api.get("/dyno-sizes/huge")) == (404, "not_found")
    assert error_of(httpx.get(api.base_url.join("/log-sessions/expired"))) == (404, "not_found")


def test_taken_app_name_is_a_conflict(api: httpx.Client, app: str) -> None:
    assert error_of(api.post("/apps", json={"name": app})) == (409, "conflict")


def test_wrong_values_are_invalid_params(api: httpx.Client, app: str) -> None:
    bad = {"updates": [{"type": "web", "quantity": "two"}]}
    assert error_of(api.patch(f"/apps/{app}/formation", json=bad)) == (422, "invalid_params")
    assert error_of(api.post("/apps", json={"name": "x", "region": "eu"})) == (
        422,
        "invalid_params",
    )


def test_unreadable_body_is_a_bad_request(api: httpx.Client, app: str) -> None:
    response = api.patch(
        f"/apps/{app}/config-vars",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert error_of(response) == (400, "bad_request")
