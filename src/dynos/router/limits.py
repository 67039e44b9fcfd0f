"""How many client connections the router holds: per client address, and in all.

Every client connection costs the router a file descriptor, and one more for the dyno
connection while it has a request in flight. Without a cap, 22,000 trickling connections from
one address used all 20,000 descriptors of the server process and took the router, the API and
the manager down together (issue 11). So the router holds at most ``total`` connections and at
most ``per_client`` from one address; past either it answers 503 and closes (proxy.py).

The defaults follow the process's descriptor limit (``limits_for``): a reserve is kept for the
API, the manager (a few descriptors per dyno: its pipes, its log), SQLite, and the dyno
connections of the pool, and the rest is shared at two descriptors per client connection.
Pure: the counts change only through ``admit`` and ``release``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from dynos.errors import UserError

# Descriptors kept out of the router's share: at least this many, or a fifth of the limit.
RESERVE_MIN = 256
RESERVE_SHARE = 5
FDS_PER_CONNECTION = 2  # the client's, and the dyno connection that serves it
TOTAL_MAX = 65_536  # past this, memory (some KB a connection) runs out before descriptors
PER_CLIENT_MIN = 64  # a NAT or a busy office shares one address: never fewer than this
PER_CLIENT_SHARE = 8  # one address may hold an eighth of the total


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    total: int  # client connections the router holds at once
    per_client: int  # of which from one client address

    def share(self, processes: int) -> ConnectionLimits:
        """Each router process's part when ``processes`` share the port (the kernel spreads
        connections evenly over them, one address's included)."""
        return ConnectionLimits(
            total=math.ceil(self.total / processes),
            per_client=math.ceil(self.per_client / processes),
        )


def reserve_for(nofile: int) -> int:
    """Descriptors left to the rest of the process (API, manager, store) under ``nofile``."""
    return min(max(RESERVE_MIN, nofile // RESERVE_SHARE), nofile // 2)


def most_connections(nofile: int) -> int:
    """The most client connections that fit under ``nofile`` descriptors with the reserve."""
    return max(1, (nofile - reserve_for(nofile)) // FDS_PER_CONNECTION)


def limits_for(nofile: int) -> ConnectionLimits:
    """The default limits for a process allowed ``nofile`` open descriptors."""
    total = min(most_connections(nofile), TOTAL_MAX)
    return ConnectionLimits(total=total, per_client=_per_client(total))


def _per_client(total: int) -> int:
    return min(total, max(PER_CLIENT_MIN, total // PER_CLIENT_SHARE))


def chosen_limits(nofile: int, total: int | None, per_client: int | None) -> ConnectionLimits:
    """The limits for ``nofile`` descriptors, with the server's options where given.

    Raises UserError for a total that would not leave the reserve free (the descriptors would
    run out before the cap is met) and for a per-client cap above the total.
    """
    most = most_connections(nofile)
    if total is not None and total > most:
        raise UserError(
            f"--router-max-connections {total} needs about {FDS_PER_CONNECTION * total} file "
            f"descriptors beside the {reserve_for(nofile)} kept for the API and the dynos, and "
            f"the limit is {nofile}: use {most} or fewer, or raise the limit (ulimit -Hn, "
            "LimitNOFILE= in a systemd unit)."
        )
    chosen_total = total if total is not None else limits_for(nofile).total
    if per_client is None:
        per_client = _per_client(chosen_total)
    elif per_client > chosen_total:
        raise UserError(
            f"--router-max-connections-per-client {per_client} is more than the router holds "
            f"in all ({chosen_total}): use at most that, or raise --router-max-connections."
        )
    return ConnectionLimits(total=chosen_total, per_client=per_client)


class Refusal(enum.Enum):
    """Why a connection was refused: which cap it met."""

    PER_CLIENT = "per-client"
    TOTAL = "total"


class ConnectionCounts:
    """The connections held, per client address and in all, against ``limits``."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> Refusal | None:
        """Count a new connection from ``address``, or say which cap refuses it (uncounted)."""
        held = self._by_address.get(address, 0)
        if held >= self.limits.per_client:
            return Refusal.PER_CLIENT
        if self.total >= self.limits.total:
            return Refusal.TOTAL
        self._by_address[address] = held + 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from ``address`` closed."""
        held = self._by_address.get(address, 0)
        if held <= 0:
            raise ValueError(f"no connection from {address!r} was admitted")
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1
        self.total -= 1

    def held_by(self, address: str) -> int:
        return self._by_address.get(address, 0)
