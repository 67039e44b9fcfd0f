"""``/apps/{app}/domains`` in process: httpx's ASGI transport to the Api, over the platform of
tests/platform/stage.py (a SQLite store in a temporary file, the manager on the fake backend,
the router's real routing table). What the heroku CLI sends for domains, domains:add,
domains:remove, domains:info, domains:update; what a wrong request changes: nothing; and
that the routing table follows before the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dynos.api.routes import Api
from dynos.core.hostnames import MAX_DOMAINS_PER_APP
from dynos.store.database import Database
from dynos.store.models import App
from tests.platform.stage import Stage, open_stage

pytestmark = pytest.mark.anyio
TOKEN = "in-process-token"
FIELDS = {
    *("id", "hostname", "kind", "cname", "status", "acm_status", "acm_status_reason"),
    *("sni_endpoint", "app", "created_at", "updated_at"),
}


@dataclass
class Client:
    stage: Stage
    http: httpx.AsyncClient
    app: App

    def routed(self, host: str) -> str | None:
        route = self.stage.routes.lookup(host)
        return None if route is None else route.app

    async def hostnames(self, app: str = "shop") -> list[str]:
        response = await self.http.get(f"/apps/{app}/domains")
        assert response.status_code == 200, response.text
        return [d["hostname"] for d in response.json()]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with open_stage(tmp_path) as stage:
        app = await stage.deployed_app("shop")
        await stage.platform.create_app("blog")
        await stage.manager.refresh()
        api = Api(stage.platform, TOKEN, router_url="http://{app}.localhost/", api_url="http://api")
        transport = httpx.ASGITransport(app=api.app)
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.heroku+json"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as http:
            yield Client(stage, http, app)


async def test_an_app_lists_its_own_hostname_first(client: Client) -> None:
    response = await client.http.get("/apps/shop/domains")
    assert response.status_code == 200, response.text
    [own] = response.json()
    assert set(own) == FIELDS
    assert own["hostname"] == "shop.localhost"
    assert (own["kind"], own["status"], own["cname"], own["sni_endpoint"]) == (
        "heroku",
        "none",
        None,
        None,
    )
    assert own["app"] == {"id": client.app.id, "name": "shop"}
    # Its id is the same on every call, and finds it.
    again = (await client.http.get(f"/apps/shop/domains/{own['id']}")).json()
    assert again == own
    assert (await client.http.get("/apps/shop/domains/SHOP.localhost")).json() == own


async def test_adding_a_domain_routes_it_before_the_answer(client: Client) -> None:
    assert client.routed("www.example.com") is None
    response = await client.http.post(
        "/apps/shop/domains", json={"hostname": "WWW.Example.com.", "sni_endpoint": None}
    )

    assert response.status_code == 201, response.text
    domain = response.json()
    assert set(domain) == FIELDS
    assert domain["hostname"] == "www.example.com"
    assert (domain["kind"], domain["status"], domain["cname"]) == (
        "custom",
        "succeeded",
        "shop.localhost",
    )
    assert client.routed("www.example.com") == "shop"
    assert client.routed("WWW.EXAMPLE.COM:8080") == "shop"
    assert await client.hostnames() == ["shop.localhost", "www.example.com"]
    for identity in (domain["id"], "www.example.com", "Www.Example.Com"):
        info = await client.http.get(f"/apps/shop/domains/{identity}")
        assert info.json() == domain, identity
    assert await client.stage.platform.app_hostnames(client.app) == [
        "shop.localhost",
        "www.example.com",
    ]


async def test_removing_a_domain_stops_routing_it(client: Client) -> None:
    added = await client.http.post("/apps/shop/domains", json={"hostname": "www.example.com"})
    assert client.routed("www.example.com") == "shop"

    response = await client.http.delete("/apps/shop/domains/www.example.com")

    assert response.status_code == 200, response.text
    assert response.json() == added.json()
    assert client.routed("www.example.com") is None
    assert await client.hostnames() == ["shop.localhost"]
    gone = await client.http.delete("/apps/shop/domains/www.example.com")
    assert (gone.status_code, gone.json()["id"]) == (404, "not_found")


async def test_a_domain_of_another_app_is_refused_naming_it(client: Client) -> None:
    await client.http.post("/apps/shop/domains", json={"hostname": "www.example.com"})

    taken = await client.http.post("/apps/blog/domains", json={"hostname": "www.EXAMPLE.com"})
    again = await client.http.post("/apps/shop/domains", json={"hostname": "www.example.com"})

    assert (taken.status_code, taken.json()["id"]) == (409, "conflict")
    assert "already in use by the app shop" in taken.json()["message"]
    assert "domains:remove www.example.com -a shop" in taken.json()["message"]
    assert (again.status_code, again.json()["id"]) == (409, "conflict")
    assert "already added to this app" in again.json()["message"]
    assert client.routed("www.example.com") == "shop"
    assert await client.hostnames("blog") == ["blog.localhost"]
    # Nor may one app remove another's domain.
    other = await client.http.delete("/apps/blog/domains/www.example.com")
    assert other.status_code == 404
    assert client.routed("www.example.com") == "shop"


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ({"hostname": "*.example.com"}, 422, "Wildcard"),
        ({"hostname": "blog.localhost"}, 422, "platform's own domain"),
        ({"hostname": "git.localhost"}, 422, "platform's own domain"),
        ({"hostname": "bad_name.example.com"}, 422, "RFC 1123"),
        ({"hostname": "10.0.0.1"}, 422, "IP address"),
        ({"hostname": 7}, 422, "needs a hostname"),
        ({"hostname": None, "sni_endpoint": None}, 422, "needs a hostname"),
        ({}, 422, "needs a hostname"),
        ({"hostname": "www.example.com", "sni_endpoint": "my-cert"}, 422, "serves no HTTPS"),
        (["www.example.com"], 400, ""),
    ],
)
async def test_a_wrong_domain_is_refused_and_changes_nothing(
    client: Client, body: object, status: int, said: str
) -> None:
    response = await client.http.post("/apps/shop/domains", json=body)

    assert response.status_code == status, response.text
    assert said in response.json()["message"]
    assert await client.hostnames() == ["shop.localhost"]
    assert client.routed("www.example.com") is None
    assert client.routed("blog.localhost") == "blog"


async def test_the_apps_own_hostname_cannot_be_removed(client: Client) -> None:
    response = await client.http.delete("/apps/shop/domains/shop.localhost")
    assert (response.status_code, response.json()["id"]) == (422, "invalid_params")
    assert "the app's own hostname" in response.json()["message"]
    assert client.routed("shop.localhost") == "shop"


async def test_update_accepts_no_certificate_choice(client: Client) -> None:
    added = await client.http.post("/apps/shop/domains", json={"hostname": "a.example.com"})
    path = "/apps/shop/domains/a.example.com"
    kept = await client.http.patch(path, json={"sni_endpoint": None})
    chosen = await client.http.patch(path, json={"sni_endpoint": "x"})
    unknown = await client.http.patch(path.replace("a.", "b."), json={"sni_endpoint": None})
    assert (kept.status_code, kept.json()) == (200, added.json())
    assert chosen.status_code == 422
    assert unknown.status_code == 404


async def test_domains_go_with_their_app_and_follow_its_name(client: Client) -> None:
    stage = client.stage
    await client.http.post("/apps/blog/domains", json={"hostname": "blog.example.com"})
    renamed = await client.http.patch("/apps/blog", json={"name": "journal"})
    assert renamed.status_code == 200, renamed.text
    await stage.manager.refresh()  # a rename reaches the router with the next reconcile
    [own, custom] = (await client.http.get("/apps/journal/domains")).json()
    assert (own["hostname"], custom["cname"]) == ("journal.localhost", "journal.localhost")
    assert client.routed("blog.example.com") == "journal"

    destroyed = await client.http.delete("/apps/journal")

    assert destroyed.status_code == 200, destroyed.text
    assert client.routed("blog.example.com") is None
    assert await stage.store.call(lambda db: db.hostnames_by_app()) == {}
    # The name is free again.
    response = await client.http.post("/apps/shop/domains", json={"hostname": "blog.example.com"})
    assert response.status_code == 201, response.text


async def test_an_app_has_at_most_so_many_domains(client: Client) -> None:
    def fill(db: Database) -> None:
        for n in range(MAX_DOMAINS_PER_APP):
            db.create_domain(client.app.id, f"d{n}.example.com")

    await client.stage.store.transaction(fill)
    response = await client.http.post("/apps/shop/domains", json={"hostname": "one.example.com"})
    assert response.status_code == 422
    assert "remove one before adding another" in response.json()["message"]
    # The heroku CLI pages with `Range: id ..; max=1000;`: every domain comes, in pages.
    listed: list[str] = []
    headers = {"Range": "id ..; max=1000;"}
    while True:
        page = await client.http.get("/apps/shop/domains", headers=headers)
        assert page.status_code in (200, 206), page.text
        listed += [d["hostname"] for d in page.json()]
        if page.status_code != 206:
            break
        headers = {"Range": page.headers["Next-Range"]}
    assert len(listed) == MAX_DOMAINS_PER_APP + 1


async def test_unknown_apps_answer_404(client: Client) -> None:
    for method, path in [
        ("GET", "/apps/nope/domains"),
        ("POST", "/apps/nope/domains"),
        ("GET", "/apps/nope/domains/www.example.com"),
        ("DELETE", "/apps/nope/domains/www.example.com"),
        ("GET", "/apps/nope/sni-endpoints"),
    ]:
        response = await client.http.request(method, path, json={"hostname": "www.example.com"})
        assert (response.status_code, response.json()["id"]) == (404, "not_found"), path
