"""Suite-wide: how async tests run, and which tests are ``integration`` and ``slow``.

Async tests are plain ``async def test_...`` functions marked ``pytest.mark.anyio`` (anyio's
pytest plugin, installed with anyio): each gets a fresh asyncio event loop, as
``asyncio.run`` gave it. The ``anyio_backend`` fixture below picks asyncio; a module that
also wants uvloop parametrizes ``anyio_backend`` itself.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
