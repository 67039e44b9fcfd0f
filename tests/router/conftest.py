"""Every async router test runs on both event loops the server may use: asyncio's and uvloop's.

The tests are ``async def`` functions run by anyio's plugin (``pytestmark =
pytest.mark.anyio`` in each module), on the loop ``anyio_backend`` below names. Each one is
bounded to ``TEST_TIMEOUT`` seconds (a test that starts a process, whose Python start-up a
loaded machine stretches, gives its own bound with pytest-timeout's
``@pytest.mark.timeout(N)``), and since an exception in a protocol callback does not
fail a test by itself (the event loop logs it and closes the transport), it also fails when
the loop reported anything, up to and including the loop's close (``pytest_pyfunc_call``
below). And no input a test sends may make the router log an error (a traceback: issue 11),
unless the test plants a bug in the router on purpose (``@pytest.mark.planted_bug``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pytest

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


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[object]:
    """Around anyio's call of an async test: the bound, and the loop's reports. The loop
    is closed by the time anyio's call returns (router tests have no async fixtures), so a
    report made while closing it counts too."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return (yield)
    marker = pyfuncitem.get_closest_marker("timeout")
    bound = float(marker.args[0]) if marker is not None else TEST_TIMEOUT
    reported: list[dict[str, Any]] = []

    @functools.wraps(test)
    async def bounded(**kwargs: Any) -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        async with asyncio.timeout(bound):
            await test(**kwargs)

    pyfuncitem.obj = bounded
    try:
        outcome = yield
    finally:
        pyfuncitem.obj = test
    assert reported == [], f"the event loop reported errors: {reported}"
    return outcome
