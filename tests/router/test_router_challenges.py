"""The router answers ACME HTTP-01 challenges itself (router/challenges.py): for the token's
names only, before any routing, in every router process, and only while the order is open."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from dynos.logs.hub import LogHub
from dynos.router.challenges import (
    ChallengeBoard,
    challenge_answer,
    challenges_from_json,
    challenges_to_json,
)
from dynos.router.processes import RouterProcesses, listening_sockets
from dynos.router.proxy import Router
from dynos.router.routing_table import RoutingTable

from .router_harness import HOST, one_dyno

pytestmark = pytest.mark.anyio

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
ANSWER = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = f"/.well-known/acme-challenge/{TOKEN}"


def test_the_answer_needs_the_token_the_name_and_a_get() -> None:
    challenges = {TOKEN: (frozenset({"foo.example.com"}), ANSWER.encode())}
    target = PATH.encode()
    assert challenge_answer(challenges, b"GET", "foo.example.com", target) == ANSWER.encode()
    assert challenge_answer(challenges, b"HEAD", "FOO.example.com.:80", target) == ANSWER.encode()
    assert challenge_answer(challenges, b"GET", "bar.example.com", target) is None
    assert challenge_answer(challenges, b"POST", "foo.example.com", target) is None
    assert challenge_answer(challenges, b"GET", "foo.example.com", target + b"x") is None
    assert challenge_answer(challenges, b"GET", "foo.example.com", b"/" + TOKEN.encode()) is None
    assert (
        challenge_answer(challenges, b"GET", "foo.example.com", b"/.well-known/acme-challenge/\xff")
        is None
    )
    assert challenge_answer(challenges, b"GET", "[::1]:80", target) is None


def test_challenges_travel_to_router_processes_as_json() -> None:
    challenges = {TOKEN: (frozenset({"b.example.com", "a.example.com"}), ANSWER.encode())}
    assert challenges_from_json(challenges_to_json(challenges)) == challenges


async def test_an_open_challenge_is_answered_by_the_router_not_the_dyno() -> None:
    async with one_dyno() as (dyno, r, http):
        board = ChallengeBoard(r.table)
        await board.publish(TOKEN, [HOST], ANSWER)
        answer = await http.get(PATH)
        assert answer.status_code == 200
        assert answer.text == ANSWER
        assert answer.headers["content-type"] == "text/plain"
        head = await http.head(PATH, headers={"Host": f"{HOST}:{r.port}"})
        assert head.status_code == 200 and head.content == b""
        assert dyno.requests == []
        # Another name, another method, another token: the app's as usual.
        other = await http.get(f"/.well-known/acme-challenge/{TOKEN[:-1]}")
        posted = await http.post(PATH, content=b"x")
        assert (other.status_code, posted.status_code) == (200, 200)
        assert len(dyno.requests) == 2
        elsewhere = await http.get(PATH, headers={"Host": "bar.localhost"})
        assert elsewhere.status_code == 404  # no such app
        await board.withdraw([TOKEN])
        assert r.table.challenges == {}
        after = await http.get(PATH)
        assert after.status_code == 200 and after.json()["path"] == PATH  # the dyno's
        assert len(dyno.requests) == 3


# A router process started: 2-3 s of Python start-up when idle, past 10 s on a loaded machine.
@pytest.mark.timeout(90)
async def test_every_router_process_answers_once_publish_returns() -> None:
    table = RoutingTable("localhost")
    processes = RouterProcesses(LogHub())
    router = Router(table, LogHub())
    sockets = listening_sockets("127.0.0.1", 0, 2)
    tls_sockets = listening_sockets("127.0.0.1", 0, 2)  # unused here: no certificate given
    await router.start(sock=sockets[0])
    try:
        await processes.start(router, [(sockets[1], tls_sockets[1])])
        board = ChallengeBoard(table, processes)
        await board.publish(TOKEN, ["foo.localhost"], ANSWER)

        async def fetch() -> int:
            # A connection of its own each: the kernel spreads them over the processes.
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{router.port}", headers={"Host": "foo.localhost"}
            ) as http:
                return (await http.get(PATH)).status_code

        assert await asyncio.gather(*(fetch() for _ in range(20))) == [200] * 20
        await board.withdraw([TOKEN])
        assert await asyncio.gather(*(fetch() for _ in range(20))) == [404] * 20
    finally:
        await router.close()
        await processes.close()
        for sock in (*sockets, *tls_sockets):
            sock.close()
