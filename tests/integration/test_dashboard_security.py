"""The dashboard's sign-in, session and CSRF rules over plain HTTP (httpx, no browser),
against a real server: what a forged or cross-site request gets, and that it changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from dynos.core.dashboard import FAILURES_ALLOWED
from dynos.testing.harness import RunningServer
from tests.integration.conftest import each_test, started

APP = "guarded"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    for running in started(tmp_path_factory.mktemp("dash-security") / "home"):
        running.create_app(APP)
        with running.api() as api:
            api.patch(f"/apps/{APP}/config-vars", json={"SECRET": "hush"}).raise_for_status()
        yield running


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


def browser(server: RunningServer) -> httpx.Client:
    """A client that sends what a same-origin page's form would: its Origin."""
    return httpx.Client(base_url=server.api_url, headers={"Origin": server.api_url}, timeout=30)


@pytest.fixture
def signed_in(server: RunningServer) -> Iterator[tuple[httpx.Client, str]]:
    """A signed-in client and its session's CSRF token (from the page's meta tag)."""
    with browser(server) as client:
        answer = client.post("/dashboard/sign-in", data={"token": server.token})
        assert answer.status_code == 303, answer.text
        page = client.get("/dashboard/").text
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert found, page
        yield client, found.group(1)


def config_version(server: RunningServer) -> int:
    with server.api() as api:
        return len(api.get(f"/apps/{APP}/releases").json())


def test_the_session_cookie_is_httponly_strict_and_the_token_never_in_a_url(
    server: RunningServer,
) -> None:
    with browser(server) as client:
        answer = client.post("/dashboard/sign-in", data={"token": server.token})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here: a Secure cookie never returns
    assert server.token not in cookie


def test_without_a_session_pages_lead_to_sign_in_and_scripts_get_401(
    server: RunningServer,
) -> None:
    with browser(server) as client:
        assert client.get("/").headers["location"] == "/dashboard/"
        page = client.get("/dashboard/")
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/sign-in"
        script = client.get(f"/dashboard/apps/{APP}/processes.json", headers={"X-CSRF-Token": "x"})
        assert script.status_code == 401 and script.json()["id"] == "unauthorized"
        forged = client.post(f"/dashboard/apps/{APP}/formation", data={"type": "web"})
        assert forged.status_code == 401


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null"])
def test_a_sign_in_from_another_origin_is_refused(
    server: RunningServer, origin: str | None
) -> None:
    headers = {} if origin is None else {"Origin": origin}
    with httpx.Client(base_url=server.api_url, timeout=30) as client:
        answer = client.post("/dashboard/sign-in", data={"token": server.token}, headers=headers)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_a_state_change_needs_the_same_origin_and_the_sessions_csrf_token(
    server: RunningServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, csrf = signed_in
    before = config_version(server)
    url = f"/dashboard/apps/{APP}/rollback"
    no_token = client.post(url, data={"release": "1"})
    wrong_token = client.post(url, data={"release": "1", "csrf": csrf + "x"})
    cross_site = client.post(
        url, data={"release": "1", "csrf": csrf}, headers={"Origin": "http://evil.example"}
    )
    no_origin = httpx.post(
        server.api_url + url, data={"release": "1", "csrf": csrf}, cookies=client.cookies
    )
    not_a_form = client.post(url, json={"release": "1", "csrf": csrf})
    assert [a.status_code for a in (no_token, wrong_token, cross_site, no_origin)] == [403] * 4
    assert not_a_form.status_code == 422
    assert config_version(server) == before  # nothing happened
    # The same request, right: refused by the platform (v1 has no code), said in a flash.
    right = client.post(url, data={"release": "1", "csrf": csrf})
    assert right.status_code == 303
    assert "has no code to roll back to" in client.get(f"/dashboard/apps/{APP}").text


def test_scripts_reads_need_the_csrf_header(
    server: RunningServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, csrf = signed_in
    url = f"/dashboard/apps/{APP}/config-var.json?name=SECRET"
    assert client.get(url).status_code == 403
    assert client.get(url, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    answer = client.get(url, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200 and answer.json() == {"name": "SECRET", "value": "hush"}
    assert answer.headers["cache-control"] == "no-store"
    missing = client.get(url.replace("SECRET", "NOPE"), headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 422 and "has no config var" in missing.json()["message"]
    bad_window = client.get(
        f"/dashboard/apps/{APP}/metrics.json?window=1y", headers={"X-CSRF-Token": csrf}
    )
    assert bad_window.status_code == 422


def test_pages_carry_a_csp_without_inline_script_and_no_config_value(
    server: RunningServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, _ = signed_in
    for path in ("/dashboard/sign-in", "/dashboard/", f"/dashboard/apps/{APP}"):
        answer = client.get(path, follow_redirects=True)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        page = answer.text
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page)), path
        assert not re.search(r"\son[a-z]+=|\sstyle=|<style", page), path
    assert "hush" not in client.get(f"/dashboard/apps/{APP}").text


def test_signing_out_ends_the_session_on_the_server(
    server: RunningServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, csrf = signed_in
    stolen = dict(client.cookies)
    assert client.post("/dashboard/sign-out", data={"csrf": csrf}).status_code == 303
    again = httpx.get(f"{server.api_url}/dashboard/", cookies=stolen)
    assert again.status_code == 303 and again.headers["location"] == "/dashboard/sign-in"


def test_the_session_does_not_open_the_api(
    server: RunningServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, _ = signed_in
    assert client.get("/apps").status_code == 401  # the API still wants the token
    assert client.get("/dashboard/apps/nope", follow_redirects=False).status_code == 404


def test_failed_sign_ins_are_throttled_even_for_the_right_token(own_server: RunningServer) -> None:
    with browser(own_server) as client:
        for _ in range(FAILURES_ALLOWED):
            assert client.post("/dashboard/sign-in", data={"token": "guess"}).status_code == 401
        refused = client.post("/dashboard/sign-in", data={"token": own_server.token})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "set-cookie" not in refused.headers
