"""The API in process: httpx's ASGI transport to the Api, over the platform of
tests/platform/stage.py (a SQLite store in a temporary file, the manager on the fake
backend). What the heroku CLI sends for ps:scale, releases:rollback, config:set and a
deploy, and what a wrong request changes: nothing.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dynos.api.routes import Api
from dynos.store.models import App
from tests.platform.stage import ACCOUNT, Stage, open_stage

pytestmark = pytest.mark.anyio
TOKEN = "in-process-token"
BY = f"by user {ACCOUNT.email}"


@dataclass
class Client:
    stage: Stage
    http: httpx.AsyncClient
    app: App


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with open_stage(tmp_path) as stage:
        app = await stage.deployed_app("shop")
        api = Api(stage.platform, TOKEN, router_url="http://{app}.localhost/", api_url="http://api")
        transport = httpx.ASGITransport(app=api.app)
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.heroku+json"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as http:
            yield Client(stage, http, app)


async def test_ps_scale_answers_the_changed_types_and_the_manager_starts_them(
    client: Client,
) -> None:
    stage, app = client.stage, client.app
    response = await client.http.patch(
        "/apps/shop/formation",
        json={"updates": [{"type": "worker", "quantity": "+2", "size": "standard-2x"}]},
    )

    assert response.status_code == 200, response.text
    [worker] = response.json()
    assert (worker["type"], worker["quantity"], worker["size"]) == ("worker", 2, "Standard-2X")
    assert worker["command"] == "python3 worker.py"
    assert await stage.formation(app) == {"web": (1, "Standard-1X"), "worker": (2, "Standard-2X")}
    assert stage.api_lines(app) == [f"app[api]: Scaled to worker@2:Standard-2X {BY}"]
    assert stage.wakes == 1
    await stage.settle()
    assert stage.dynos(app) == {"web.1": "starting", "worker.1": "up", "worker.2": "up"}


@pytest.mark.parametrize(
    ("body", "status", "error_id"),
    [
        ({"updates": [{"type": "clock", "quantity": 1}]}, 404, "not_found"),
        ({"updates": [{"type": "web", "quantity": -1}]}, 422, "invalid_params"),
        ({"updates": [{"type": "web", "quantity": 2, "size": "huge"}]}, 422, "invalid_params"),
        (
            {"updates": [{"type": "web", "quantity": 2}, {"type": "worker", "quantity": "x"}]},
            422,
            "invalid_params",
        ),
        ({"updates": "web=2"}, 422, "invalid_params"),
    ],
    ids=["unknown type", "negative", "unknown size", "one wrong among right ones", "not a list"],
)
async def test_a_wrong_scale_is_refused_and_changes_nothing(
    client: Client, body: object, status: int, error_id: str
) -> None:
    stage, app = client.stage, client.app
    before = await stage.formation(app)

    response = await client.http.patch("/apps/shop/formation", json=body)

    assert (response.status_code, response.json()["id"]) == (status, error_id), response.text
    assert await stage.formation(app) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


async def test_config_set_and_unset_make_one_release(client: Client) -> None:
    stage, app = client.stage, client.app
    await client.http.patch("/apps/shop/config-vars", json={"OLD": "1"})
    stage.forget(app)

    response = await client.http.patch("/apps/shop/config-vars", json={"NEW": "2", "OLD": None})

    assert response.status_code == 200, response.text
    assert response.json() == {"NEW": "2"}
    assert (await stage.releases(app))[-1] == (4, "Set NEW config vars and Remove OLD config vars")
    assert stage.api_lines(app) == [
        f"app[api]: Set NEW config vars and Remove OLD config vars {BY}",
        f"app[api]: Release v4 created {BY}",
    ]
    assert stage.wakes == 1


@pytest.mark.parametrize(
    ("body", "status", "error_id"),
    [
        ({"9LIVES": "x"}, 422, "invalid_params"),
        ({"OK": "yes", "NUMBER": 5}, 422, "invalid_params"),
        (["NOT", "AN", "OBJECT"], 400, "bad_request"),
        ({"OK": "yes", "SECRET": "a\u0000b"}, 422, "invalid_params"),
        ({"PORT": "80"}, 422, "invalid_params"),
    ],
    ids=["bad name", "not a string", "not an object", "NUL in a value", "PORT"],
)
async def test_a_wrong_config_change_is_refused_and_changes_nothing(
    client: Client, body: object, status: int, error_id: str
) -> None:
    stage, app = client.stage, client.app
    before = await stage.releases(app)

    response = await client.http.patch("/apps/shop/config-vars", json=body)

    assert (response.status_code, response.json()["id"]) == (status, error_id), response.text
    assert await stage.releases(app) == before
    assert (await client.http.get("/apps/shop/config-vars")).json() == {}
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


async def test_releases_rollback_makes_a_new_release_of_the_old_one(client: Client) -> None:
    stage, app = client.stage, client.app
    await client.http.patch("/apps/shop/config-vars", json={"MODE": "new"})  # v3
    stage.forget(app)

    response = await client.http.post("/apps/shop/releases", json={"release": "2"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["version"], body["description"], body["current"]) == (4, "Rollback to v2", True)
    assert (await client.http.get("/apps/shop/config-vars")).json() == {}
    assert stage.api_lines(app) == [
        f"app[api]: Rollback to v2 {BY}",
        f"app[api]: Release v4 created {BY}",
    ]
    assert stage.wakes == 1


@pytest.mark.parametrize(
    ("body", "status", "error_id"),
    [
        ({"release": "1"}, 422, "invalid_params"),  # the Initial release has no code
        ({"release": "99"}, 404, "not_found"),
        ({"release": None}, 422, "invalid_params"),
        ({}, 422, "invalid_params"),
    ],
    ids=["no code", "no such release", "null", "missing"],
)
async def test_a_wrong_rollback_is_refused_and_changes_nothing(
    client: Client, body: object, status: int, error_id: str
) -> None:
    stage, app = client.stage, client.app
    before = await stage.releases(app)

    response = await client.http.post("/apps/shop/releases", json=body)

    assert (response.status_code, response.json()["id"]) == (status, error_id), response.text
    assert await stage.releases(app) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


def app_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_a_deploy_streams_its_output_then_the_release(client: Client) -> None:
    stage, app = client.stage, client.app
    upload = app_tarball({"Procfile": b"web: python3 app.py\n", "app.py": b"pass\n"})

    response = await client.http.post(
        "/apps/shop/deploys", content=upload, headers={"Content-Type": "application/gzip"}
    )

    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"output": "-----> Discovering process types: web"}
    release = lines[-1]["release"]
    assert (release["version"], release["current"]) == (3, True)
    assert await stage.formation(app) == {"web": (1, "Standard-1X")}  # worker is gone
    assert stage.api_lines(app) == [
        f"app[api]: {release['description']} {BY}",
        f"app[api]: Release v3 created {BY}",
    ]
    assert release["description"].startswith("Deploy ")
    assert stage.wakes == 1


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (app_tarball({"app.py": b"pass\n"}), "application/gzip", 422),  # no Procfile
        (b"not a tarball", "application/gzip", 400),
        (b"", "application/gzip", 400),
        (app_tarball({"Procfile": b"web: x\n"}), "application/json", 415),
    ],
    ids=["no Procfile", "not a tarball", "empty", "wrong type"],
)
async def test_a_wrong_deploy_is_refused_and_changes_nothing(
    client: Client, content: bytes, content_type: str, status: int
) -> None:
    stage, app = client.stage, client.app
    before = (await stage.releases(app), set(stage.slugs_dir.iterdir()))

    response = await client.http.post(
        "/apps/shop/deploys", content=content, headers={"Content-Type": content_type}
    )

    assert response.status_code == status, response.text
    assert (await stage.releases(app), set(stage.slugs_dir.iterdir())) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


async def test_app_features_list_read_and_switch_preboot(client: Client) -> None:
    base = f"/apps/{client.app.name}/features"
    listed = (await client.http.get(base)).json()
    assert sorted((f["name"], f["enabled"], f["state"]) for f in listed) == [
        ("log-runtime-metrics", False, "beta"),
        ("preboot", False, "general"),
    ]
    preboot = next(f for f in listed if f["name"] == "preboot")
    by_id = (await client.http.get(f"{base}/{preboot['id']}")).json()
    assert by_id["name"] == "preboot"
    switched = await client.http.patch(f"{base}/preboot", json={"enabled": True})
    assert switched.status_code == 200 and switched.json()["enabled"] is True
    assert (await client.http.get(f"{base}/preboot")).json()["enabled"] is True
    states = await client.stage.store.app_states()
    assert [s.features for s in states if s.app.id == client.app.id] == [frozenset({"preboot"})]
    log = client.stage.logs.recent(client.app.name, 50)
    assert any(f"Enable preboot {BY}" in line.message for line in log)


async def test_a_wrong_feature_request_is_refused_and_changes_nothing(client: Client) -> None:
    base = f"/apps/{client.app.name}/features"
    unknown = await client.http.get(f"{base}/spaces-dns-discovery")
    assert unknown.status_code == 404 and "Features: preboot" in unknown.json()["message"]
    for body in ({}, {"enabled": "yes"}, {"enabled": None}):
        refused = await client.http.patch(f"{base}/preboot", json=body)
        assert refused.status_code == 422, body
        assert refused.json()["id"] == "invalid_params"
    assert (await client.http.get(f"{base}/preboot")).json()["enabled"] is False


@pytest.mark.parametrize(
    "env",
    [
        {"DYNO=x": "1"},
        {"NOT-A-NAME": "1"},
        {"": "1"},
        {"PORT": "80"},
        {"DYNO": "web.1"},
        {"OK": "1", "SECRET": "a\u0000b"},
    ],
    ids=["= in a name", "dash", "empty name", "PORT", "DYNO", "NUL in a value"],
)
@pytest.mark.parametrize("attach", [False, True])
async def test_a_one_off_env_breaking_the_config_var_rules_starts_nothing(
    client: Client, env: dict[str, str], attach: bool
) -> None:
    stage, app = client.stage, client.app
    await stage.settle()
    before = stage.dynos(app)

    response = await client.http.post(
        "/apps/shop/dynos", json={"command": "env", "attach": attach, "env": env}
    )

    assert (response.status_code, response.json()["id"]) == (422, "invalid_params"), response.text
    assert "Nothing was changed" in response.json()["message"]
    await stage.settle()
    assert stage.dynos(app) == before
    assert stage.api_lines(app) == []


async def test_a_one_off_env_that_keeps_the_rules_runs(client: Client) -> None:
    response = await client.http.post(
        "/apps/shop/dynos", json={"command": "env", "env": {"DEBUG": "1", "_X2": 3}}
    )
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "run"


@pytest.mark.parametrize(
    "value", [b'"inf"', b'"nan"', b"1e999", b"-1e999", b"NaN", b"1" + b"0" * 400]
)
async def test_an_idle_after_that_is_no_finite_number_is_refused(
    client: Client, value: bytes
) -> None:
    before = (await client.http.get("/apps/shop/settings")).json()
    response = await client.http.patch(
        "/apps/shop/settings",
        content=b'{"idle_after": ' + value + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert (response.status_code, response.json()["id"]) == (422, "invalid_params"), response.text
    assert "finite number of seconds" in response.json()["message"]
    assert (await client.http.get("/apps/shop/settings")).json() == before
