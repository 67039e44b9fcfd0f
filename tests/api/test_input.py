"""Bad input changes nothing: bodies not sent as JSON (what a cross-site form or a no-cors
fetch can send) get 415, names with a trailing newline are refused, and digits that are not
ASCII never reach int(). Over real HTTP against a real server."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import httpx
import pytest

from dynos.testing.harness import RunningServer, tarball, wait_for
from tests.api.conftest import ENVECHO

APP = "inputs"


@pytest.fixture(scope="module")
def app(server: RunningServer, api: httpx.Client) -> str:
    assert api.post("/apps", json={"name": APP}).status_code == 201
    server.deploy(APP, ENVECHO)
    wait_for(lambda: state(api)["dynos"] == ["web.1"], what=f"{APP}'s web.1")
    return APP


def state(api: httpx.Client) -> dict[str, Any]:
    """Everything a request to APP could change."""

    def get(path: str) -> Any:
        response = api.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    return {
        "apps": sorted(a["name"] for a in get("/apps")),
        "releases": [r["version"] for r in get(f"/apps/{APP}/releases")],
        "config": get(f"/apps/{APP}/config-vars"),
        "formation": [(f["type"], f["quantity"], f["size"]) for f in get(f"/apps/{APP}/formation")],
        "settings": get(f"/apps/{APP}/settings"),
        "addons": get(f"/apps/{APP}/addons"),
        "dynos": sorted(d["name"] for d in get(f"/apps/{APP}/dynos")),
        "domains": sorted(d["hostname"] for d in get(f"/apps/{APP}/domains")),
    }


# Every endpoint that reads a JSON body, with a body it would act on.
JSON_REQUESTS = [
    ("POST", "/apps", {"name": "csrf-made"}),
    ("PATCH", f"/apps/{APP}", {"name": "csrf-renamed"}),
    ("PATCH", f"/apps/{APP}/config-vars", {"CSRF": "1"}),
    ("PATCH", f"/apps/{APP}/formation", {"updates": [{"type": "web", "quantity": 2}]}),
    ("PATCH", f"/apps/{APP}/formation/web", {"quantity": 0}),
    ("PATCH", f"/apps/{APP}/settings", {"idle_after": 5}),
    ("POST", f"/apps/{APP}/releases", {"release": 1}),
    ("POST", f"/apps/{APP}/dynos", {"command": "sleep 60"}),
    ("POST", f"/apps/{APP}/addons", {"plan": "redis"}),
    ("POST", f"/apps/{APP}/log-sessions", {"lines": 1}),
    ("POST", f"/apps/{APP}/domains", {"hostname": "csrf.example.com", "sni_endpoint": None}),
    ("PATCH", f"/apps/{APP}/domains/{APP}.localhost", {"sni_endpoint": None}),
]
FORM_TYPES = [
    "text/plain",
    "text/plain; charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,  # a no-cors fetch of a Blob sends no type at all
    "application/json; charset=latin-1",
]


@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_a_json_body_in_another_type_is_refused_with_415_and_changes_nothing(
    api: httpx.Client, app: str, content_type: str | None
) -> None:
    before = state(api)
    headers = {"Content-Type": content_type} if content_type else {}
    for method, path, body in JSON_REQUESTS:
        content = httpx.Request("POST", "/", json=body).content
        response = api.request(method, path, content=content, headers=headers)
        assert response.status_code == 415, (method, path, response.text)
        assert response.headers["content-type"] == "application/json"
        error = response.json()
        assert error["id"] == "unsupported_media_type", error
        assert "Content-Type: application/json" in error["message"]
    assert state(api) == before


def test_an_empty_body_without_a_type_is_refused_too(api: httpx.Client, app: str) -> None:
    before = state(api)
    for path in ("/apps", f"/apps/{APP}/log-sessions"):
        response = api.post(path)
        assert response.status_code == 415, response.text
    assert state(api) == before


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON;charset="UTF-8"',
        "application/vnd.heroku+json; version=3",
    ],
)
def test_json_types_are_read(api: httpx.Client, app: str, content_type: str) -> None:
    response = api.patch(
        f"/apps/{APP}/settings",
        content=b'{"idle_after": 0}',
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.json()["idle_after"] == 0


def test_a_deploy_must_be_sent_as_gzip(server: RunningServer, api: httpx.Client, app: str) -> None:
    before = state(api)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = api.post(f"/apps/{APP}/deploys", content=tarball(ENVECHO), headers=headers)
        assert response.status_code == 415, response.text
        assert response.json()["id"] == "unsupported_media_type"
    assert state(api) == before


def test_a_deploy_of_a_path_1000_levels_deep_is_refused_clearly(
    api: httpx.Client, app: str
) -> None:
    """A 200-byte upload whose one directory is 1,000 levels deep: once a 500 (Path.mkdir's
    RecursionError), now the upload's own refusal, and nothing changes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        deep = tarfile.TarInfo("/".join(["a"] * 1000))
        deep.type, deep.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(deep)
    before = state(api)
    response = api.post(
        f"/apps/{APP}/deploys",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/gzip"},
    )
    assert response.status_code == 422, response.text
    assert "at most 1024 bytes and 64 levels" in response.json()["message"]
    assert state(api) == before


def test_names_with_a_trailing_newline_are_refused(api: httpx.Client, app: str) -> None:
    assert api.post("/apps", json={"name": "nl-app"}).status_code == 201
    before = state(api)
    for name in ("nl-app\n", "nl-other\n", "nl\napp"):
        response = api.post("/apps", json={"name": name})
        assert response.status_code == 422, (name, response.text)
        assert response.json()["id"] == "invalid_params"
    response = api.patch("/apps/nl-app", json={"name": "nl-renamed\n"})
    assert response.status_code == 422, response.text
    response = api.patch(f"/apps/{APP}/config-vars", json={"KEY\n": "v"})
    assert response.status_code == 422, response.text
    for hostname in ("www.example.com\n", "www.example.com\nHost: evil.example"):
        response = api.post(f"/apps/{APP}/domains", json={"hostname": hostname})
        assert response.status_code == 422, (hostname, response.text)
    assert state(api) == before
    assert api.delete("/apps/nl-app").status_code == 200


def test_digits_that_are_not_ascii_are_not_numbers(api: httpx.Client, app: str) -> None:
    """ "²" passes str.isdigit() but not int(): it used to be a 500 (a traceback)."""
    assert api.get(f"/apps/{APP}/releases/v\u00b2").status_code == 404
    assert api.get(f"/apps/{APP}/releases/{'9' * 40}").status_code == 404  # too big for SQLite
    response = api.get(
        f"/apps/{APP}/releases", headers={"Range": "version ..; max=\u00b2".encode("latin-1")}
    )
    assert response.status_code == 416, response.text
    response = api.get(
        f"/apps/{APP}/dynos", headers={"Range": "name web.\u00b2..".encode("latin-1")}
    )
    assert response.status_code == 200, response.text
    response = api.patch(f"/apps/{APP}/formation/web", json={"quantity": "\u0663"})  # Arabic 3
    assert response.status_code == 422, response.text
