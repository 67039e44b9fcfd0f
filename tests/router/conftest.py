"""Every router test runs on both event loops the server may use: asyncio's and uvloop's.

An exception in a protocol callback does not fail a test by itself (the event loop logs it
and closes the transport), so ``run`` also fails the test when the loop reported any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

from tests.router.router_harness import Run

TEST_TIMEOUT = 10.0


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(scenario: Coroutine[Any, Any, None]) -> None:
        reported: list[dict[str, Any]] = []

        async def bounded() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
            async with asyncio.timeout(TEST_TIMEOUT):
                await scenario

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(bounded())
        assert reported == [], f"the event loop reported errors: {reported}"

    return run
