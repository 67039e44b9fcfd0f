"""manager/health.py: a slug's app.json read safely, and one check's attempt against a real
HTTP server on a port-0 socket (no dyno, no manager)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynos.core.healthchecks import NO_CHECKS, CheckType, HealthCheck
from dynos.errors import UserError
from dynos.manager.health import probe, read_healthchecks


def test_a_slug_s_app_json_is_read_only_as_a_plain_file(tmp_path: Path) -> None:
    assert read_healthchecks(tmp_path) == NO_CHECKS
    (tmp_path / "app.json").write_text(json.dumps({"healthchecks": {"web": [{"path": "/up"}]}}))
    assert [c.path for c in read_healthchecks(tmp_path).web] == ["/up"]
    (tmp_path / "app.json").unlink()
    os.mkfifo(tmp_path / "app.json")  # would block an open without O_NONBLOCK
    with pytest.raises(UserError, match="not a plain file"):
        read_healthchecks(tmp_path)
    (tmp_path / "app.json").unlink()
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "app.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(UserError, match="cannot be read"):
        read_healthchecks(tmp_path)


@pytest.fixture
async def app_port() -> AsyncIterator[int]:
    """A tiny HTTP server: /ok answers 200 "ready", /slow never answers, the rest 503; and
    400 to a Host other than shop.localhost, as an app that checks its hosts does."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await reader.readline()).split()[1]
        host = (await reader.readline()).strip()
        if path == b"/slow":
            await reader.read()  # no answer until the check gives up and hangs up
        status, body = ("200 OK", b"ready") if path == b"/ok" else ("503 Busy", b"busy")
        if host != b"Host: shop.localhost":
            status, body = "400 Bad Host", b"bad host"
        writer.write(f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


HOST = "shop.localhost"  # the app's own hostname: what the manager's checks ask for


def check(path: str, content: str | None = None) -> HealthCheck:
    return HealthCheck(CheckType.STARTUP, path, timeout=0.3, content=content)


@pytest.mark.anyio
async def test_one_attempt_passes_or_says_why_it_failed(app_port: int) -> None:
    assert await probe(app_port, check("/ok"), HOST) is None
    assert await probe(app_port, check("/ok", content="ready"), HOST) is None
    why = await probe(app_port, check("/ok", content="done"), HOST)
    assert why == "answered 200 without 'done' in its body"
    assert await probe(app_port, check("/sick"), HOST) == "answered 503"
    assert await probe(app_port, check("/slow"), HOST) == "did not answer within 0.3 s"
    assert await probe(app_port, check("/ok"), "localhost") == "answered 400"


@pytest.mark.anyio
async def test_a_dyno_not_listening_could_not_be_reached() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    why = await probe(port, check("/"), HOST)
    assert why is not None and why.startswith("could not be reached")
