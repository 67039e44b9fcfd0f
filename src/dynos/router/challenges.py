"""ACME HTTP-01 challenges, answered by the router on its own (RFC 8555, section 8.3).

To prove that it controls ``app.example.com``, the platform's ACME client (platform/acm.py)
is given a token per name; the ACME server then fetches
``http://app.example.com/.well-known/acme-challenge/<token>`` (port 80, which is the router's
HTTP port) and expects the key authorization back. While an order is open, its tokens sit in
the routing table's ``challenges`` (token -> the names it was given for, and the answer); the
router answers a GET or HEAD for such a path and Host itself, before looking for the app, so
that a name is proven even while its app has no dyno up. With no order open the dict is empty
and the router's only cost is one test of it per request.

``ChallengeBoard`` is how the platform puts tokens up and takes them down: in this process's
table and, through ``followers`` (processes.py), in every other router process, waiting
until each has them before the ACME server is told to look.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from dynos.router.routing_table import Challenge, RoutingTable

PREFIX = b"/.well-known/acme-challenge/"


def challenge_answer(
    challenges: dict[str, Challenge], method: bytes, host: str, target: bytes
) -> bytes | None:
    """The body that answers this request if it asks for an open challenge, else None."""
    if not target.startswith(PREFIX) or method not in (b"GET", b"HEAD"):
        return None
    try:
        token = target[len(PREFIX) :].decode("ascii")
    except UnicodeDecodeError:
        return None
    challenge = challenges.get(token)
    if challenge is None:
        return None
    names, answer = challenge
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return answer if name.lower().rstrip(".") in names else None


def challenges_to_json(challenges: dict[str, Challenge]) -> dict[str, Any]:
    return {
        token: [sorted(names), answer.decode()] for token, (names, answer) in challenges.items()
    }


def challenges_from_json(data: dict[str, Any]) -> dict[str, Challenge]:
    return {
        str(token): (frozenset(str(name) for name in names), str(answer).encode())
        for token, (names, answer) in data.items()
    }


class ChallengeFollowers(Protocol):
    """The other router processes (processes.py's ``RouterProcesses``)."""

    async def challenges_changed(self, challenges: dict[str, Challenge]) -> None:
        """Send the open challenges to every process; return once each has them."""


class ChallengeBoard:
    """Where the platform's ACME client puts up and takes down its HTTP-01 answers."""

    def __init__(self, table: RoutingTable, followers: ChallengeFollowers | None = None) -> None:
        self._table = table
        self._followers = followers

    async def publish(self, token: str, names: Iterable[str], key_authorization: str) -> None:
        """Answer ``token`` for ``names`` from now on, in every router process."""
        wanted = frozenset(name.lower().rstrip(".") for name in names)
        self._table.challenges[token] = (wanted, key_authorization.encode("ascii"))
        await self._tell_followers()

    async def withdraw(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self._table.challenges.pop(token, None)
        await self._tell_followers()

    async def _tell_followers(self) -> None:
        if self._followers is not None:
            await self._followers.challenges_changed(dict(self._table.challenges))
