"""The router's HTTPS port (router/tls.py, Router.start_https): a real TLS listener before
fake dynos, reached by Python's ssl client: versions, SNI, resumption, forwarded headers."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dynos.core.certificates import ServedCertificate
from dynos.platform import tls_files
from tests.platform.test_certificates import self_signed
from tests.router.router_harness import APP, HOST, Running, fake_dynos, running_router, table_with

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@dataclass
class Scene:
    running: Running
    https_port: int
    ca: Path
    directory: Path

    def serve(self, certificates: list[ServedCertificate]) -> None:
        self.running.router.tls.update(certificates)


def issued(directory: Path, hosts: list[str], own: bool = False) -> ServedCertificate:
    authority = tls_files.ensure_ca(directory)
    chain, key = tls_files.issue(authority, hosts)
    stem = hosts[0].replace("*", "_")
    (directory / f"{stem}.pem").write_bytes(chain)
    (directory / f"{stem}.key").write_bytes(key)
    return ServedCertificate(
        tuple(hosts), str(directory / f"{stem}.pem"), str(directory / f"{stem}.key"), own
    )


@asynccontextmanager
async def tls_router(tmp_path: Path) -> AsyncIterator[Scene]:
    async with (
        fake_dynos("web.1") as [dyno],
        running_router(table_with(APP, [dyno.endpoint])) as running,
    ):
        scene = Scene(running, 0, tmp_path / "ca.pem", tmp_path)
        scene.serve([issued(tmp_path, ["git.localhost"]), issued(tmp_path, [HOST])])
        scene.https_port = await running.router.start_https("127.0.0.1", 0)
        yield scene


def client_context(cafile: Path | str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def https_request(
    port: int,
    context: ssl.SSLContext,
    server_name: str | None = HOST,
    request: bytes = b"GET / HTTP/1.1\r\nHost: foo.localhost\r\nConnection: close\r\n\r\n",
    session: ssl.SSLSession | None = None,
) -> tuple[bytes, Handshake]:
    """One request over a new TLS connection (blocking: run it in a thread)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = context.wrap_socket(raw, server_hostname=server_name, session=session)
    conn.sendall(request)
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    # (read after the answer: TLS 1.3 sends its session tickets after the handshake)
    done = Handshake(
        conn.version(), conn.cipher(), conn.session, conn.session_reused, conn.getpeercert()
    )
    conn.close()
    return answer, done


@dataclass
class Handshake:
    version: str | None
    cipher: tuple[str, str, int] | None
    session: ssl.SSLSession | None
    session_reused: bool
    peer: Any


def seen_by_dyno(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)  # type: ignore[no-any-return]


def header(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


async def test_a_request_over_tls_reaches_the_dyno_marked_https(tmp_path: Path) -> None:
    async with tls_router(tmp_path) as scene:
        forged = (
            b"GET / HTTP/1.1\r\nHost: foo.localhost\r\nX-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Port: 80\r\nx-forwarded-proto: ftp\r\nConnection: close\r\n\r\n"
        )
        answer, conn = await asyncio.to_thread(
            https_request, scene.https_port, client_context(scene.ca), HOST, forged
        )
        seen = seen_by_dyno(answer)
        assert header(seen, "X-Forwarded-Proto") == ["https"]
        assert header(seen, "X-Forwarded-Port") == [str(scene.https_port)]
        assert conn.version in ("TLSv1.2", "TLSv1.3")
        # The HTTP port says http, whatever the client says.
        reader, writer = await asyncio.open_connection("127.0.0.1", scene.running.port)
        writer.write(forged.replace(b"http\r\n", b"https\r\n"))
        plain = seen_by_dyno(await reader.read())
        writer.close()
        assert header(plain, "X-Forwarded-Proto") == ["http"]
        assert header(plain, "X-Forwarded-Port") == [str(scene.running.port)]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")  # the point here
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_tls_before_1_2_is_refused(tmp_path: Path, version: ssl.TLSVersion) -> None:
    async with tls_router(tmp_path) as scene:
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(scene.ca)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would speak it
        old.minimum_version = old.maximum_version = version
        with pytest.raises(ssl.SSLError):
            await asyncio.to_thread(https_request, scene.https_port, old)
        # The router still serves the next client.
        answer, _ = await asyncio.to_thread(
            https_request, scene.https_port, client_context(scene.ca)
        )
        seen_by_dyno(answer)


async def test_tls_1_2_is_served_with_an_intermediate_cipher(tmp_path: Path) -> None:
    async with tls_router(tmp_path) as scene:
        context = client_context(scene.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        answer, conn = await asyncio.to_thread(https_request, scene.https_port, context)
        seen_by_dyno(answer)
        assert conn.version == "TLSv1.2"
        cipher = conn.cipher
        assert cipher is not None and cipher[0].startswith("ECDHE-ECDSA-")
        # A cipher outside Mozilla's intermediate list is not offered.
        weak = client_context(scene.ca)
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("ECDHE-ECDSA-AES128-SHA")
        with pytest.raises(ssl.SSLError):
            await asyncio.to_thread(https_request, scene.https_port, weak)


async def test_sni_picks_an_apps_own_certificate_before_the_issued_one(tmp_path: Path) -> None:
    async with tls_router(tmp_path) as scene:
        own_dir = tmp_path / "own"
        own_dir.mkdir()
        chain, key = self_signed([HOST])
        (own_dir / "own.pem").write_text(chain)
        (own_dir / "own.key").write_text(key)
        own = ServedCertificate((HOST,), str(own_dir / "own.pem"), str(own_dir / "own.key"), True)
        platform = [issued(tmp_path, ["git.localhost"]), issued(tmp_path, [HOST])]
        scene.serve([*platform, own])
        answer, conn = await asyncio.to_thread(
            https_request, scene.https_port, client_context(own_dir / "own.pem")
        )
        seen_by_dyno(answer)
        # Other names still get the platform's certificates; no name gets git.<domain>'s.
        git = client_context(scene.ca)
        to_git = b"GET / HTTP/1.1\r\nHost: git.localhost\r\nConnection: close\r\n\r\n"
        answer, conn = await asyncio.to_thread(
            https_request, scene.https_port, git, "git.localhost", to_git
        )
        assert answer.startswith(b"HTTP/1.1 404")
        unnamed = client_context(scene.ca)
        unnamed.check_hostname = False
        _, conn = await asyncio.to_thread(https_request, scene.https_port, unnamed, None)
        peer = conn.peer
        assert peer is not None and ("DNS", "git.localhost") in peer["subjectAltName"]
        # Without its own certificate, the app's host gets the issued one again.
        scene.serve(platform)
        answer, _ = await asyncio.to_thread(
            https_request, scene.https_port, client_context(scene.ca)
        )
        seen_by_dyno(answer)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_session_is_resumed(tmp_path: Path, version: ssl.TLSVersion) -> None:
    async with tls_router(tmp_path) as scene:
        context = client_context(scene.ca)
        context.minimum_version = context.maximum_version = version
        _, first = await asyncio.to_thread(https_request, scene.https_port, context)
        assert not first.session_reused
        session = first.session
        assert session is not None
        _, second = await asyncio.to_thread(
            https_request, scene.https_port, context, HOST, session=session
        )
        assert second.session_reused
