"""Domains and certificates together, in process (the Api over tests/platform/stage.py, with
the server's certificate keeper wired as server.py wires it): each domain's ``sni_endpoint``
and each sni-endpoint's ``domains``, a domain choosing its certificate (``domains:add
--cert``, ``domains:update --cert``, certs:add's question), the refusals, and what the router
is told to serve after a certificate or a domain goes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynos.api.routes import Api
from dynos.core.certificates import CertificateSource, ServedCertificate
from dynos.platform.certificates import Certificates
from dynos.store.database import Database
from tests.platform.stage import Stage, open_stage
from tests.platform.test_certificates import self_signed

pytestmark = pytest.mark.anyio
TOKEN = "in-process-token"


@dataclass
class Client:
    stage: Stage
    http: httpx.AsyncClient
    keeper: Certificates

    async def cert(self, *names: str, app: str = "shop") -> dict[str, Any]:
        chain, key = self_signed(list(names))
        body = {"certificate_chain": chain, "private_key": key}
        response = await self.http.post(f"/apps/{app}/sni-endpoints", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def domain(self, hostname: str) -> dict[str, Any]:
        response = await self.http.get(f"/apps/shop/domains/{hostname}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def endpoint(self, name: str) -> dict[str, Any]:
        response = await self.http.get(f"/apps/shop/sni-endpoints/{name}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def served_for(self, host: str) -> ServedCertificate | None:
        """The app certificate the router is told to serve for ``host`` (None: the
        platform's)."""
        found = [c for c in self.keeper.served if c.own and host in c.names]
        assert len(found) <= 1
        return found[0] if found else None


def ref(endpoint: dict[str, Any]) -> dict[str, str]:
    return {"id": endpoint["id"], "name": endpoint["name"]}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with open_stage(tmp_path) as stage:
        await stage.deployed_app("shop")
        await stage.platform.create_app("blog")
        keeper = Certificates(tmp_path / "tls", "localhost", stage.store)
        stage.platform.certificates = keeper
        await keeper.start()
        await stage.platform.domains.watch(keeper.set_custom_domains)
        api = Api(stage.platform, TOKEN, router_url="http://{app}.localhost/", api_url="http://api")
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.heroku+json"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url="http://api", headers=headers
        ) as http:
            for hostname in ("www.example.com", "api.example.com"):
                added = await http.post("/apps/shop/domains", json={"hostname": hostname})
                assert added.status_code == 201, added.text
            yield Client(stage, http, keeper)


async def test_domains_and_certificates_name_each_other(client: Client) -> None:
    assert (await client.domain("www.example.com"))["sni_endpoint"] is None
    cert = await client.cert("www.example.com")

    www, api = await client.domain("www.example.com"), await client.domain("api.example.com")
    assert www["sni_endpoint"] == ref(cert)
    assert api["sni_endpoint"] is None  # not covered: the platform's certificate
    assert (await client.domain("shop.localhost"))["sni_endpoint"] is None
    assert cert["domains"] == [www["id"]]
    listed = (await client.http.get("/apps/shop/sni-endpoints")).json()
    assert [e["domains"] for e in listed] == [[www["id"]]]
    served = client.served_for("www.example.com")
    assert served is not None and served.names == ("www.example.com",)
    assert client.served_for("api.example.com") is None


async def test_a_domain_chooses_its_certificate_and_the_choice_is_served(client: Client) -> None:
    older = await client.cert("www.example.com", "api.example.com")
    newer = await client.cert("www.example.com")
    assert (await client.domain("www.example.com"))["sni_endpoint"] == ref(newer)  # the newest

    chosen = await client.http.patch(
        "/apps/shop/domains/www.example.com", json={"sni_endpoint": older["name"]}
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["sni_endpoint"] == ref(older)
    served = client.served_for("www.example.com")
    assert served is not None and older["id"] in served.chain_path
    assert sorted((await client.endpoint(older["name"]))["domains"]) == sorted(
        [
            (await client.domain("www.example.com"))["id"],
            (await client.domain("api.example.com"))["id"],
        ]
    )
    assert (await client.endpoint(newer["name"]))["domains"] == []

    # Null: the rule again (the newest that names it).
    back = await client.http.patch(
        "/apps/shop/domains/www.example.com", json={"sni_endpoint": None}
    )
    assert back.json()["sni_endpoint"] == ref(newer)


async def test_a_domain_is_added_with_its_certificate(client: Client) -> None:
    cert = await client.cert("shop.example.org", "www.example.com")
    other = await client.cert("shop.example.org", "api.example.com")
    added = await client.http.post(
        "/apps/shop/domains", json={"hostname": "shop.example.org", "sni_endpoint": cert["id"]}
    )
    assert added.status_code == 201, added.text
    assert added.json()["sni_endpoint"] == ref(cert)
    assert (await client.domain("shop.example.org"))["sni_endpoint"] == ref(cert)
    api = await client.domain("api.example.com")
    assert (await client.endpoint(other["name"]))["domains"] == [api["id"]]


@pytest.mark.parametrize(
    ("hostname", "choice", "status", "said"),
    [
        ("api.example.com", "mine", 422, "does not cover api.example.com"),
        ("www.example.com", "no-such-cert", 404, "Couldn't find that SNI endpoint"),
        ("www.example.com", 7, 422, "name or id of one of the app's certificates"),
    ],
)
async def test_a_wrong_choice_is_refused_and_changes_nothing(
    client: Client, hostname: str, choice: object, status: int, said: str
) -> None:
    cert = await client.cert("www.example.com")
    choice = cert["name"] if choice == "mine" else choice
    before = await client.domain(hostname)
    response = await client.http.patch(
        f"/apps/shop/domains/{hostname}", json={"sni_endpoint": choice}
    )
    assert response.status_code == status, response.text
    assert said in response.json()["message"]
    assert await client.domain(hostname) == before
    added = await client.http.post(
        "/apps/shop/domains", json={"hostname": "new.example.com", "sni_endpoint": choice}
    )
    assert added.status_code in (404, 422)
    assert "new.example.com" not in [
        d["hostname"] for d in (await client.http.get("/apps/shop/domains")).json()
    ]


async def test_another_apps_certificate_cannot_be_chosen_or_served(client: Client) -> None:
    # blog's certificate names shop's hosts too: it serves blog's host only.
    blog = await client.cert("blog.localhost", "shop.localhost", "www.example.com", app="blog")
    assert client.served_for("shop.localhost") is None
    assert client.served_for("www.example.com") is None
    assert client.served_for("blog.localhost") is not None
    refused = await client.http.patch(
        "/apps/shop/domains/www.example.com", json={"sni_endpoint": blog["name"]}
    )
    assert refused.status_code == 404


async def test_removing_a_certificate_or_a_domain_leaves_the_right_one_served(
    client: Client,
) -> None:
    first = await client.cert("www.example.com")
    second = await client.cert("www.example.com", "api.example.com")
    await client.http.patch(
        "/apps/shop/domains/www.example.com", json={"sni_endpoint": second["name"]}
    )
    # A replacement of ``second`` must still cover the domain that chose it.
    chain, key = self_signed(["api.example.com"])
    refused = await client.http.patch(
        f"/apps/shop/sni-endpoints/{second['name']}",
        json={"certificate_chain": chain, "private_key": key},
    )
    assert refused.status_code == 422
    assert "does not cover www.example.com" in refused.json()["message"]

    removed = await client.http.delete(f"/apps/shop/sni-endpoints/{second['name']}")
    assert removed.status_code == 200
    assert (await client.domain("www.example.com"))["sni_endpoint"] == ref(first)
    assert (await client.domain("api.example.com"))["sni_endpoint"] is None
    assert client.served_for("api.example.com") is None

    gone = await client.http.delete("/apps/shop/domains/www.example.com")
    assert gone.status_code == 200
    assert (await client.endpoint(first["name"]))["domains"] == []
    assert client.served_for("www.example.com") is None
    assert ("www.example.com",) not in [c.names for c in client.keeper.served]


async def test_a_certificate_for_none_of_the_apps_domains_is_refused(client: Client) -> None:
    chain, key = self_signed(["shop.example.org"])
    response = await client.http.post(
        "/apps/shop/sni-endpoints", json={"certificate_chain": chain, "private_key": key}
    )
    assert response.status_code == 422
    message = response.json()["message"]
    assert "covers none of the app's domains" in message and "domains:add" in message
    assert (await client.http.get("/apps/shop/sni-endpoints")).json() == []


async def test_acms_certificate_serves_the_domains_it_covers_and_cannot_be_overridden(
    client: Client,
) -> None:
    own = await client.cert("www.example.com")
    app = await client.stage.platform.get_app("shop")
    chain, key = self_signed(["shop.localhost", "www.example.com", "api.example.com"])
    acm = await client.keeper.install(app, chain, key, source=CertificateSource.ACM)

    www = await client.domain("www.example.com")
    assert www["sni_endpoint"] == {"id": acm.id, "name": acm.name}
    assert (await client.domain("shop.localhost"))["sni_endpoint"]["id"] == acm.id
    refused = await client.http.patch(
        "/apps/shop/domains/www.example.com", json={"sni_endpoint": own["name"]}
    )
    assert refused.status_code == 422
    assert "certs:auto:disable" in refused.json()["message"]
    # ACM off (its certificate removed): the app's own serves again.
    await client.keeper.remove(acm)
    assert (await client.domain("www.example.com"))["sni_endpoint"] == ref(own)


async def test_the_apps_own_hostname_may_choose_too_and_its_choice_goes_with_a_rename(
    client: Client,
) -> None:
    older = await client.cert("shop.localhost")
    await client.cert("shop.localhost")
    chosen = await client.http.patch(
        "/apps/shop/domains/shop.localhost", json={"sni_endpoint": older["name"]}
    )
    assert chosen.json()["sni_endpoint"] == ref(older)
    renamed = await client.http.patch("/apps/shop", json={"name": "store"})
    assert renamed.status_code == 200, renamed.text
    pins = await client.stage.store.call(Database.certificate_pins)
    assert "shop.localhost" not in pins.get(renamed.json()["id"], {})
    assert (await client.http.get("/apps/store/domains/store.localhost")).json()[
        "sni_endpoint"
    ] is None  # its certificates name the old hostname only
