"""A bug in a handler answers a Heroku-shaped JSON 500 with a request id, and the server's log
has the traceback under that id. In-process: the API over a real store and a manager on the
fake backend, and a use-case that fails the way a bug does."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from dynos.api.routes import Api
from dynos.platform.models import App
from dynos.platform.platform import Platform, local_account
from tests.manager.test_manager import World

pytestmark = pytest.mark.anyio

TOKEN = "secret-token"


async def broken_config(app: App) -> dict[str, str]:
    raise ZeroDivisionError("a bug, not the client's doing")


async def test_an_unexpected_exception_is_a_json_500_with_a_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = await World.open(tmp_path)
    platform = Platform(world.store, world.manager, world.logs, tmp_path, local_account())
    platform.releases.config = broken_config  # type: ignore[method-assign]
    api = Api(platform, TOKEN, router_url="http://{app}.localhost/", api_url="http://api")
    transport = httpx.ASGITransport(app=api.app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        with caplog.at_level(logging.ERROR, logger="dynos.api"):
            failed = await client.get("/apps/foo/config-vars", headers=headers)
        known = await client.get("/apps/nope/config-vars", headers=headers)
    await world.store.close()

    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    body = failed.json()
    request_id = failed.headers["Request-Id"]
    assert body["id"] == "internal_error"
    assert request_id in body["message"]
    assert "ZeroDivisionError" not in failed.text  # the traceback is for the log only
    [record] = [r for r in caplog.records if request_id in r.getMessage()]
    assert "GET /apps/foo/config-vars" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    # What the client did wrong keeps its own answer.
    assert known.status_code == 404 and known.json()["id"] == "not_found"
