"""Every route of the API, every method it takes, fed hostile bodies and path segments: each
answer is a deliberate one, in Heroku's ``{"id", "message"}`` shape when it is an error.
An unexpected exception (api/errors.py's CatchAll: a 500 with a ``Request-Id``) is a handler
that let client input reach code that did not expect it.

In process over the stage's platform (tests/platform/stage.py): no sockets, so a few thousand
requests take seconds. Deterministic: the random bodies come from a fixed seed per route."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from dynos.api.routes import Api
from tests.platform.stage import open_stage

pytestmark = pytest.mark.anyio
TOKEN = "fuzz-token"
ROUNDS = 3  # of the ten bodies of raw_bodies() per route and method: ~2,000 requests

# Field names the Platform API's bodies use: a random body mostly names real fields.
FIELDS = [
    "name",
    "quantity",
    "size",
    "type",
    "command",
    "updates",
    "hostname",
    "sni_endpoint",
    "certificate_chain",
    "private_key",
    "plan",
    "config",
    "attach",
    "env",
    "lines",
    "tail",
    "source",
    "source_blob",
    "url",
    "dyno",
    "release",
    "slug",
    "enabled",
    "idle_after",
    "stack",
    "region",
    "app",
    "addon",
    "addon_attachment",
    "confirm",
    "force",
    "time_to_live",
    "description",
    "process_types",
    "maintenance",
    "build_stack",
    "as",
    "namespace",
]
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**70,
    1.5,
    float("1e308"),
    "",
    " ",
    "web",
    "web.1",
    "shop",
    "\n",
    "a\nb",
    "x" * 5000,
    "../..",
    "/etc/passwd",
    "\x00",
    "٣",
    "+2",
    "-999",
    "Standard-2X",
    "none",
    "*.example.com",
    "https://127.0.0.1:1/",
    "{}",
    [],
    {},
    [None],
    [{}],
    {"type": 1},
]
SEGMENTS = ["shop", "web", "web.1", "nope", "x" * 300, "..", "%2e%2e", "%00", "٣", "a b", "-1"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and roll < 0.3:
        return random_body(rng, depth + 1)
    return rng.choice(VALUES)


def random_body(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {rng.choice(FIELDS): random_value(rng, depth) for _ in range(rng.randint(0, 4))}


def raw_bodies(rng: random.Random) -> list[tuple[bytes, str]]:
    """(body, content type): JSON of every shape, then bytes that are not JSON at all."""
    bodies = [(json.dumps(random_body(rng)).encode(), "application/json")]
    bodies += [(json.dumps(v).encode(), "application/json") for v in (None, [], "s", 7)]
    bodies += [
        (b"{", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"name": "a"}', "text/plain"),
        (b"name=a", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ]
    return bodies


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Api]]:
    async with open_stage(tmp_path) as stage:
        await stage.deployed_app("shop")
        api = Api(stage.platform, TOKEN, router_url="http://{app}.localhost/", api_url="http://api")
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.heroku+json"}
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers, timeout=10
        ) as http:
            yield http, api


def fill(path: str, rng: random.Random) -> str:
    """The route's path with each ``{param}`` a real name or a hostile segment."""
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            part = rng.choice(SEGMENTS)
        out.append(part)
    return "/".join(out)


async def test_no_route_answers_client_input_with_a_500(
    client: tuple[httpx.AsyncClient, Api],
) -> None:
    http, api = client
    failures: list[str] = []
    routes = [r for r in api.routes if isinstance(r, Route)]
    assert len(routes) > 40, "the API's routes were not found"
    for route in routes:
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            rng = random.Random(f"{method} {route.path}")
            for _ in range(ROUNDS):
                for body, content_type in raw_bodies(rng):
                    url = fill(route.path, rng)
                    response = await http.request(
                        method, url, content=body, headers={"Content-Type": content_type}
                    )
                    unexpected = "Request-Id" in response.headers
                    if unexpected or (response.status_code >= 400 and not is_error_shape(response)):
                        failures.append(
                            f"{method} {url} {body[:80]!r} -> {response.status_code} "
                            f"{response.text[:200]}"
                        )
    assert not failures, "\n".join(failures[:40])


def is_error_shape(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and {"id", "message"} <= body.keys()
