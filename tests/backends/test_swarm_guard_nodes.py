"""The swarm guard tells the server's firewall the nodes' addresses whenever they change
(the add-on servers let them in, the fence keeps one-offs off them): a fake engine, no
swarm."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from dynos.backends.swarm_guard import SwarmGuard


class FakeApi:
    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return []  # no guard task runs yet: the settling waits (and is cancelled below)


def test_the_nodes_addresses_reach_on_nodes_once_per_change_even_when_ensure_fails() -> None:
    async def scenario() -> list[list[str]]:
        async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        client = SimpleNamespace(api=FakeApi(), info=lambda: {"Swarm": {"NodeAddr": "10.77.0.1"}})
        guard = SwarmGuard(client, "0123456789abcdef", "stack", "127.0.0.1:5000", call)  # type: ignore[arg-type]
        told: list[list[str]] = []
        guard.on_nodes = told.append
        failing = [False]

        def ensure(nodes: list[str]) -> None:
            if failing[0]:
                raise RuntimeError("the engine refused the guard's update")

        guard.ensure = ensure  # type: ignore[method-assign]
        one = {"a": ("vm", "10.77.0.1", False), "b": ("lab-2", "10.77.0.2", False)}
        await guard.cover(one, wait=False)
        await guard.cover(one, wait=False)  # the same addresses: nothing new to tell
        await guard.cover({**one, "c": ("lab-3", "", False)}, wait=False)  # no address yet
        failing[0] = True
        with pytest.raises(RuntimeError):
            await guard.cover({**one, "d": ("lab-4", "10.77.0.4", False)}, wait=False)
        if guard._settling is not None:
            guard._settling.cancel()
        return told

    told = asyncio.run(scenario())
    assert told == [
        ["10.77.0.1", "10.77.0.2"],
        ["10.77.0.1", "10.77.0.2"],  # the addresses changed ("" came): told again, "" left out
        # Before the guard's update, which failed: the firewall does not wait for it.
        ["10.77.0.1", "10.77.0.2", "10.77.0.4"],
    ]
