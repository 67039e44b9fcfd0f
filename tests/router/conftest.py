"""Every router test runs on both event loops the server may use: asyncio's and uvloop's.

An exception in a protocol callback does not fail a test by itself (the event loop logs it
and closes the transport), so ``run`` also fails the test when the loop reported any. And no
input a test sends may make the router log an error (a traceback: issue 11), unless the test
plants a bug in the router on purpose (``@pytest.mark.planted_bug``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from tests.router.router_harness import Run

TEST_TIMEOUT = 10.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "planted_bug: the test breaks the router on purpose; it may log errors"
    )


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def router_logs_no_error(request: pytest.FixtureRequest) -> Iterator[None]:
    errors = _Errors()
    logger = logging.getLogger("dynos.router")
    logger.addHandler(errors)
    try:
        yield
    finally:
        logger.removeHandler(errors)
    if request.node.get_closest_marker("planted_bug") is None:
        said = [errors.format(r) for r in errors.records]
        assert said == [], "the router logged errors:\n" + "\n".join(said)


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
