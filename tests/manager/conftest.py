"""The manager's tests share one scene: ``w``, a :class:`World` (a manager on a fake backend
and clock, over a real store), opened on the test's event loop and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.manager.test_manager import World


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    world = await World.open(tmp_path)
    try:
        yield world
    finally:
        await world.store.close()
