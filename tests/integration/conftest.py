"""Fixtures of the integration tests: a real `dynos server` per test (dynos.testing.harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, dyno_states, start_server, tarball, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

__all__ = ["EXAMPLES", "RunningServer", "dyno_states", "start_server", "tarball", "wait_for"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "home", "--stop-grace", "5")
    yield running
    if running.process.poll() is None:
        running.stop()
