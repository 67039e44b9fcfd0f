"""A node whose engine is gone is down at once (backends/swarm_engine.check_engines): its
address refuses the engine's port. Real sockets on loopback stand in for the nodes' engines
(the lab's kill -9 of a real one is tests/integration/test_swarm_backend.py's last test)."""

from __future__ import annotations

import socket

import pytest

from dynos.backends.swarm_engine import check_engines

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]


async def test_a_refused_port_is_a_gone_engine_and_an_answer_a_live_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as live:
        port = live.getsockname()[1]
        nodes = {
            "up": ("node-1", "127.0.0.1", False),
            "gone": ("node-2", "127.0.0.2", False),  # nothing listens there at that port
            "down": ("node-3", "127.0.0.3", True),  # Swarm said so already: stays down
            "no-address": ("node-4", "", False),
        }
        checked = await check_engines(nodes, port)
    assert checked == {
        "up": ("node-1", "127.0.0.1", False),
        "gone": ("node-2", "127.0.0.2", True),
        "down": ("node-3", "127.0.0.3", True),
        "no-address": ("node-4", "", False),
    }
