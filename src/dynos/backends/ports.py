"""The ports handed to web dynos: free when handed out, and none the kernel hands out itself.

A port from the kernel's ephemeral range (``ip_local_port_range``: where ``bind(0)`` and the
local port of every outgoing connection come from) can be taken between its hand-out and the
dyno's own bind: by any outgoing connection on the machine (the router's connections to
dynos among them), or by the boot probe's connect to that very port (a TCP self-connect,
which succeeds on loopback when nothing listens yet). The dyno then fails with "Address
already in use". So dyno ports come from below that range, are checked free on every
address (a dyno may bind 0.0.0.0 or ::, as gunicorn's ``0.0.0.0:$PORT``), and are not
handed out again while the dyno that has one runs. A dyno that still fails to bind gets a
new port when it is restarted (each start takes one).
"""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

from dynos.errors import PlatformError

LOWEST = 20000  # dyno ports start here, above the usual services' ports
MIN_PORTS = 1000  # a range below the ephemeral one smaller than this is not used
TRIES = 200  # random ports looked at before giving up
EPHEMERAL_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default


def parse_ephemeral(text: str) -> tuple[int, int]:
    """``ip_local_port_range``'s two numbers (the default when unreadable)."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return DEFAULT_EPHEMERAL
    low, high = int(parts[0]), int(parts[1])
    return (low, high) if 0 < low <= high <= 65535 else DEFAULT_EPHEMERAL


def dyno_port_range(ephemeral: tuple[int, int]) -> range:
    """Where dyno ports come from: below the ephemeral range, else above it, else (a machine
    whose ephemeral range covers nearly everything) the ephemeral range itself."""
    low, high = ephemeral
    if low - LOWEST >= MIN_PORTS:
        return range(LOWEST, low)
    if 65535 - high >= MIN_PORTS:
        return range(high + 1, 65536)
    return range(max(1024, low), high + 1)


def is_free(port: int) -> bool:
    """Whether nothing is bound to ``port`` on any address, IPv4 or IPv6 (a strict bind,
    without SO_REUSEADDR: a port in TIME_WAIT counts as taken too)."""
    checks = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        checks.append((socket.AF_INET6, "::"))
    for family, address in checks:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno == errno.EADDRNOTAVAIL:  # no IPv6
                continue
            return False
    return True


class DynoPorts:
    """The ports of one server's web dynos."""

    def __init__(self, ports: range | None = None, *, strict: bool = False) -> None:
        """``strict``: a port from ``ports`` or none (PlatformError), never the kernel's."""
        if ports is None:
            try:
                ports = dyno_port_range(parse_ephemeral(EPHEMERAL_FILE.read_text()))
            except OSError:
                ports = dyno_port_range(DEFAULT_EPHEMERAL)
        self.ports = ports
        self._strict = strict
        self._held: set[int] = set()
        self._random = random.SystemRandom()

    def allocate(self) -> int:
        """A free port no running dyno holds, held until :meth:`release`: from the range,
        else (all tried taken) one the kernel picks. Raises OSError if even that fails."""
        for _ in range(TRIES):
            port = self._random.choice(self.ports)
            if port not in self._held and is_free(port):
                self._held.add(port)
                return port
        if self._strict:  # every port of the range looked at once, in a random order
            for port in self._random.sample(self.ports, len(self.ports)):
                if port not in self._held and is_free(port):
                    self._held.add(port)
                    return port
            raise PlatformError(
                f"No free port left in {self.ports.start}-{self.ports.stop - 1}: free one "
                "(dynos addons:destroy an add-on no app needs, or stop what else listens there)."
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("0.0.0.0", 0))
            found: int = sock.getsockname()[1]
        self._held.add(found)
        return found

    def release(self, port: int | None) -> None:
        """The dyno that held ``port`` has ended."""
        if port is not None:
            self._held.discard(port)
