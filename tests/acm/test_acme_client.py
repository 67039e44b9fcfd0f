"""The ACME client against Debian's pebble, with the router answering the HTTP-01 challenges:
the real protocol, end to end, without a dynos server (tests/integration/test_acm.py has one)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from dynos.logs.hub import LogHub
from dynos.platform.acme_client import AcmeClient, AcmeFailed
from dynos.router.challenges import ChallengeBoard
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable

from .pebble import Pebble, free_port, needs_pebble

pytestmark = [
    pytest.mark.anyio,
    needs_pebble,
]


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    table = RoutingTable("example.test")
    router = Router(table, LogHub())
    await router.start("127.0.0.1", 0)
    yield router
    await router.close()


@pytest.fixture
def pebble_for(tmp_path: Path) -> Iterator[list[Pebble]]:
    started: list[Pebble] = []
    yield started
    for pebble in started:
        pebble.stop()


def names_in(pem: bytes) -> list[str]:
    leaf = x509.load_pem_x509_certificate(pem)
    san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    return sorted(san.value.get_values_for_type(x509.DNSName))


async def test_a_certificate_is_issued_for_every_name_with_the_router_answering(
    router: Router, tmp_path: Path, pebble_for: list[Pebble]
) -> None:
    pebble = Pebble.start(tmp_path / "pebble", router.port)
    pebble_for.append(pebble)
    board = ChallengeBoard(router.table)
    acme = AcmeClient(pebble.directory_url, tmp_path / "acme", board, ca_bundle=pebble.ca_bundle)
    issued = await acme.obtain(["web.example.test", "WWW.Example.test"])

    assert issued.names == ("web.example.test", "www.example.test")
    assert names_in(issued.cert_pem) == ["web.example.test", "www.example.test"]
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
    assert issued.not_after == leaf.not_valid_after_utc
    # The chain pebble sent verifies up to the root its management API gives.
    chain = x509.load_pem_x509_certificates(issued.cert_pem)
    root = x509.load_pem_x509_certificate(pebble.issuing_root())
    assert chain[-1].issuer == root.subject
    assert router.table.challenges == {}  # taken down once the order is done
    account_key = tmp_path / "acme" / "account.key"
    assert stat.S_IMODE(account_key.stat().st_mode) == 0o600
    # A second order reuses the account (found again by its key).
    again = await acme.obtain(["web.example.test"])
    assert names_in(again.cert_pem) == ["web.example.test"]


async def test_a_challenge_the_router_cannot_answer_fails_with_the_servers_reason(
    router: Router, tmp_path: Path, pebble_for: list[Pebble]
) -> None:
    closed = free_port()  # pebble looks there: nothing answers
    pebble = Pebble.start(tmp_path / "pebble", closed)
    pebble_for.append(pebble)
    acme = AcmeClient(
        pebble.directory_url,
        tmp_path / "acme",
        ChallengeBoard(router.table),
        ca_bundle=pebble.ca_bundle,
    )
    with pytest.raises(AcmeFailed) as failed:
        await acme.obtain(["web.example.test"])
    assert "Validation failed: web.example.test:" in str(failed.value)
    assert "connect" in str(failed.value).lower()
    assert router.table.challenges == {}


async def test_a_directory_whose_certificate_is_not_trusted_is_refused_clearly(
    router: Router, tmp_path: Path, pebble_for: list[Pebble]
) -> None:
    pebble = Pebble.start(tmp_path / "pebble", router.port)
    pebble_for.append(pebble)
    acme = AcmeClient(pebble.directory_url, tmp_path / "acme", ChallengeBoard(router.table))
    with pytest.raises(AcmeFailed, match="--acme-ca-bundle"):
        await acme.obtain(["web.example.test"])


async def test_an_unreachable_directory_says_so(router: Router, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}/dir"
    acme = AcmeClient(url, tmp_path / "acme", ChallengeBoard(router.table))
    with pytest.raises(AcmeFailed, match="Cannot reach the ACME directory"):
        await asyncio.wait_for(acme.obtain(["web.example.test"]), 60)
