"""platform/acm.py in process (a real store, no ACME server reachable) and its API
(/apps/{app}/acm through the Api): what enabling, refreshing and disabling record, what a
failed attempt leaves, and what bad requests change: nothing. Issuance itself is tested
against pebble (tests/acm, tests/integration/test_acm.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dynos.api.routes import Api
from dynos.core.acm import RenewalPolicy
from dynos.core.certificates import CertificateSource
from dynos.platform.acm import Acm
from dynos.platform.acme_client import AcmeClient
from dynos.platform.certificates import Certificates
from dynos.router.challenges import ChallengeBoard
from dynos.router.routing_table import RoutingTable
from dynos.store.database import Database
from tests.platform.stage import Stage, open_stage
from tests.platform.test_certificates import self_signed

pytestmark = pytest.mark.anyio
TOKEN = "acm-token"
JSON_TYPE = {"Content-Type": "application/json"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Scene:
    stage: Stage
    acm: Acm
    clock: Clock
    http: httpx.AsyncClient

    async def status(self, app: str = "shop") -> dict[str, object]:
        answer = await self.http.get(f"/apps/{app}/acm")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_stage(tmp_path) as stage:
        await stage.deployed_app("shop")
        clock = Clock()
        certificates = Certificates(tmp_path / "tls", "example.com", stage.store)
        await certificates.start()
        client = AcmeClient(
            f"https://127.0.0.1:{closed_port()}/dir",
            tmp_path / "acme",
            ChallengeBoard(RoutingTable("example.com")),
        )
        policy = RenewalPolicy(retry_first=timedelta(minutes=1))
        acm = Acm(stage.store, stage.logs, client, certificates, "example.com", policy, clock=clock)
        stage.platform.acm = acm
        api = Api(stage.platform, TOKEN, router_url="http://{app}.example.com/", api_url="http://a")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app),
            base_url="http://a",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            yield Scene(stage, acm, clock, http)


async def test_enabling_turns_the_apps_acm_flag_on_and_its_host_pending(scene: Scene) -> None:
    assert (await scene.http.get("/apps/shop")).json()["acm"] is False
    assert (await scene.status())["acm"] is False
    answer = await scene.http.post("/apps/shop/acm", json={})
    assert answer.status_code == 200 and answer.json()["acm"] is True
    assert (await scene.http.get("/apps/shop")).json()["acm"] is True
    status = await scene.status()
    assert status["acm_status"] == "pending"
    assert status["certificate"] is None
    assert status["domains"] == [
        {
            "hostname": "shop.example.com",
            "acm_status": "pending",
            "acm_status_reason": None,
            "updated_at": "2026-12-01T09:00:00Z",
        }
    ]
    # Enabling again changes nothing.
    assert (await scene.http.post("/apps/shop/acm", json={})).status_code == 200


async def test_a_failed_attempt_is_recorded_with_its_reason_and_retried_later(
    scene: Scene,
) -> None:
    await scene.http.post("/apps/shop/acm", json={})
    next_check = await scene.acm.check()
    assert next_check == scene.clock.now + timedelta(minutes=1)
    status = await scene.status()
    assert status["acm_status"] == "failing"
    reason = str(status["acm_status_reason"])
    assert reason.startswith("Cannot reach the ACME directory https://127.0.0.1:")
    assert status["domains"][0]["acm_status"] == "failing"  # type: ignore[index]
    lines = [line.message for line in scene.stage.logs.recent("shop", 10, dyno="acm")]
    assert lines == [f"Certificate for shop.example.com not issued (failing): {reason}"]
    # Not tried again before the retry time; tried again then.
    assert await scene.acm.check() == scene.clock.now + timedelta(minutes=1)
    app = await scene.stage.platform.get_app("shop")
    record = await scene.stage.store.call(Database.acm_record, app.id)
    assert record is not None and record.failures == 1
    scene.clock.now += timedelta(minutes=1)
    assert await scene.acm.check() == scene.clock.now + timedelta(minutes=2)


async def test_refresh_and_disable(scene: Scene) -> None:
    refused = await scene.http.patch("/apps/shop/acm", json={"acm_refresh": True})
    assert refused.status_code == 422
    assert "certs:auto:enable -a shop" in refused.json()["message"]
    await scene.http.post("/apps/shop/acm", json={})
    await scene.acm.check()
    assert (await scene.status())["acm_status"] == "failing"
    answer = await scene.http.patch("/apps/shop/acm", json={"acm_refresh": True})
    assert answer.status_code == 200 and answer.json()["acm"] is True
    assert (await scene.status())["acm_status"] == "pending"
    # An ACM certificate (self-signed here: pebble's are tests/integration's) and the app's
    # own: disabling removes the first only.
    app = await scene.stage.platform.get_app("shop")
    certificates = scene.acm.certificates
    yesterday = datetime.now(UTC) - timedelta(days=1)
    for source in (CertificateSource.ACM, CertificateSource.OWN):
        chain, key = self_signed(["shop.example.com"], start=yesterday)
        await certificates.install(app, chain, key, source=source)
    gone = await scene.http.delete("/apps/shop/acm")
    assert gone.status_code == 200 and gone.json()["acm"] is False
    assert (await scene.status())["acm"] is False
    assert [e.source for e in await certificates.list(app)] == ["own"]


async def test_bad_requests_change_nothing(scene: Scene) -> None:
    await scene.http.post("/apps/shop/acm", json={})
    before = await scene.status()
    cases = [
        ("PATCH", "/apps/shop/acm", {"json": {"acm_refresh": False}}, 422),
        ("PATCH", "/apps/shop/acm", {"content": b"[1,2]", "headers": JSON_TYPE}, 400),
        ("POST", "/apps/shop/acm", {"content": b"{not json", "headers": JSON_TYPE}, 400),
        ("POST", "/apps/shop/acm", {"content": b"<x/>"}, 415),
        ("POST", "/apps/nosuch/acm", {"json": {}}, 404),
        ("GET", "/apps/nosuch/acm", {}, 404),
        ("DELETE", "/apps/nosuch/acm", {}, 404),
    ]
    for method, path, options, status in cases:
        answer = await scene.http.request(method, path, **options)  # type: ignore[arg-type]
        assert answer.status_code == status, (method, path, answer.text)
        assert set(answer.json()) == {"id", "message"}
    assert await scene.status() == before


async def test_without_acm_the_api_says_so(tmp_path: Path) -> None:
    async with open_stage(tmp_path) as stage:
        await stage.deployed_app("shop")
        api = Api(stage.platform, TOKEN, router_url="http://{app}.x/", api_url="http://a")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app),
            base_url="http://a",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            answer = await http.post("/apps/shop/acm", json={})
            assert answer.status_code == 503
            assert "--acme-directory" in answer.json()["message"]
            assert (await http.get("/apps/shop")).json()["acm"] is False
