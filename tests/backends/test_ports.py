"""Ports handed to web dynos (backends/ports.py): outside the kernel's ephemeral range, free on
every address when handed out, never one a running dyno holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dynos.backends.local import LocalBackend
from dynos.backends.ports import (
    DEFAULT_EPHEMERAL,
    EPHEMERAL_FILE,
    DynoPorts,
    dyno_port_range,
    is_free,
    parse_ephemeral,
)
from dynos.errors import PlatformError
from tests.backends.test_containment import Events


def test_the_ephemeral_range_is_read_and_a_bad_one_is_the_default() -> None:
    assert parse_ephemeral("32768\t60999\n") == (32768, 60999)
    assert parse_ephemeral("1024 65535") == (1024, 65535)
    assert parse_ephemeral("") == DEFAULT_EPHEMERAL
    assert parse_ephemeral("70000 80000") == DEFAULT_EPHEMERAL


def test_dyno_ports_lie_below_the_ephemeral_range_else_above_it() -> None:
    assert dyno_port_range((32768, 60999)) == range(20000, 32768)
    assert dyno_port_range((20500, 60999)) == range(61000, 65536)
    assert dyno_port_range((1024, 65535)) == range(1024, 65536)  # nothing else left


def listener(family: int, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, 0))
    sock.listen()
    return sock


@pytest.fixture
def taken() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize(
    ("family", "address"),
    [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
)
def test_a_port_with_a_listener_on_any_address_is_not_free(
    taken: list[socket.socket], family: int, address: str
) -> None:
    try:
        taken.append(listener(family, address))
    except OSError:
        pytest.skip(f"no {address} here")
    port = taken[-1].getsockname()[1]
    assert not is_free(port)
    taken[-1].close()
    assert is_free(port)


def test_a_taken_port_and_a_held_one_are_never_handed_out(taken: list[socket.socket]) -> None:
    taken.append(listener(socket.AF_INET, "0.0.0.0"))
    busy = taken[-1].getsockname()[1]
    if not is_free(busy + 1):
        pytest.skip("the port next to the listener's is taken")
    pool = DynoPorts(range(busy, busy + 2))
    assert pool.allocate() == busy + 1  # the listener's port is never chosen
    other = pool.allocate()  # the range is all held or taken: the kernel picks one
    assert other not in (busy, busy + 1)
    pool.release(busy + 1)
    assert pool.allocate() == busy + 1


def test_a_local_backend_hands_out_no_ephemeral_port() -> None:
    """Regression: ports came from bind(0), which is the ephemeral range, where any outgoing
    connection (the router's to the dynos, the boot probe's to the port itself) may take
    the port before the dyno binds it: "Address already in use"."""
    low, high = parse_ephemeral(EPHEMERAL_FILE.read_text())
    backend = LocalBackend(Events())
    ports = [backend.allocate_port() for _ in range(50)]
    assert not [p for p in ports if low <= p <= high]
    assert len(set(ports)) == 50  # none handed out twice while held


def test_a_strict_range_hands_out_its_own_ports_only_and_says_when_it_is_full(
    taken: list[socket.socket],
) -> None:
    # The add-ons' range on a swarm: a port outside it would be out of every task's reach.
    taken.append(listener(socket.AF_INET, "0.0.0.0"))
    busy = taken[-1].getsockname()[1]
    if not is_free(busy + 1):
        pytest.skip("the port next to the listener's is taken")
    pool = DynoPorts(range(busy, busy + 2), strict=True)
    assert pool.allocate() == busy + 1
    with pytest.raises(PlatformError, match=f"No free port left in {busy}-{busy + 1}"):
        pool.allocate()
