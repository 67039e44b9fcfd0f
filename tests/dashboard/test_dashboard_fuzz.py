"""Every dashboard route, signed in, fed hostile forms, query strings and path segments: each
answer is a deliberate one (a page, a redirect, or a JSON error), never a bug's 500.

In process over the stage's platform (tests/platform/stage.py), as tests/api/test_fuzz.py."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.routing import Route

from dynos.api.routes import Api
from dynos.core.dashboard import SignInThrottle
from tests.api.test_fuzz import SEGMENTS, VALUES, fill
from tests.platform.stage import open_stage

pytestmark = pytest.mark.anyio
TOKEN = "fuzz-token"
BASE = "http://api"
FIELDS = ["csrf", "token", "type", "quantity", "size", "release", "name", "window"]


@pytest.fixture
async def signed_in(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Api, str]]:
    async with open_stage(tmp_path) as stage:
        await stage.deployed_app("shop")
        api = Api(stage.platform, TOKEN, router_url="http://{app}.localhost/", api_url=BASE)
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE, headers={"Origin": BASE}, timeout=10
        ) as http:
            yield http, api, await sign_in(http, api)


async def sign_in(http: httpx.AsyncClient, api: Api) -> str:
    """A new session (the fuzzing of sign-in and sign-out may have ended the last one, and
    of sign-in made this address wait): its CSRF token."""
    api.dashboard.guard.throttle = SignInThrottle()
    answer = await http.post("/dashboard/sign-in", data={"token": TOKEN})
    assert answer.status_code == 303
    page = (await http.get("/dashboard/")).text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found
    return found.group(1)


def hostile_fields(rng: random.Random, csrf: str) -> dict[str, str]:
    fields = {rng.choice(FIELDS): str(rng.choice(VALUES)) for _ in range(rng.randint(0, 4))}
    if rng.random() < 0.7:
        fields["csrf"] = csrf  # mostly past the CSRF check, to reach the handler
    return fields


async def test_no_dashboard_route_answers_client_input_with_a_500(
    signed_in: tuple[httpx.AsyncClient, Api, str],
) -> None:
    http, api, _ = signed_in
    failures: list[str] = []
    seen: dict[int, int] = {}
    routes = [r for r in api.dashboard.routes if isinstance(r, Route)]
    assert len(routes) > 10
    for route in routes:
        if route.path.endswith("/log-stream"):
            continue  # a live stream: it never ends for an app that exists
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            csrf = await sign_in(http, api)
            rng = random.Random(f"{method} {route.path}")
            for _ in range(30):
                url = fill(route.path, rng)
                fields = hostile_fields(rng, csrf)
                headers = {"X-CSRF-Token": csrf} if rng.random() < 0.8 else {}
                if method == "GET":
                    query = "&".join(f"{k}={quote(v)}" for k, v in fields.items())
                    response = await http.get(f"{url}?{query}", headers=headers)
                else:
                    body = rng.choice(
                        [
                            "&".join(f"{k}={quote(v)}" for k, v in fields.items()).encode(),
                            b"\xff\xfe=%ff",
                            b"a=" + b"x" * 20_000,
                            b"&".join([b"a=1"] * 50),
                        ]
                    )
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
                    response = await http.post(url, content=body, headers=headers)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    failures.append(
                        f"{method} {url} -> {response.status_code} {response.text[:200]}"
                    )
    assert not failures, "\n".join(failures[:40])
    # Most requests got past the session and CSRF checks to the handlers.
    assert sum(n for status, n in seen.items() if status not in (401, 403, 429)) > 250, seen


async def test_hostile_app_names_in_the_path_get_a_page_saying_so(
    signed_in: tuple[httpx.AsyncClient, Api, str],
) -> None:
    http, _, csrf = signed_in
    for segment in SEGMENTS:
        if segment == "shop":
            continue
        response = await http.get(
            f"/dashboard/apps/{segment}/log-stream", headers={"X-CSRF-Token": csrf}
        )
        assert response.status_code in (404, 422), (segment, response.text)
