"""What the router keeps per web dyno while requests run: the live side of a route.

A ``DynoSlot`` counts the requests in flight to its dyno, holds the dyno out of the balancer
for a moment after a refused connect, keeps its idle keep-alive connections, and wakes those
who wait for it to drain. The manager drains a dyno before stopping it:

    table.set_app(app, endpoints_without_it)     # retire: no new request goes to it
    await table.wait_drained(app, dyno, grace)   # the ones it has finish
    ...then SIGTERM

A slot is routable while its dyno is in its app's route; once retired it takes no new
request and pools no connection, and it is forgotten (``forget``) when its last request is
over. Everything here runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from dynos.router.route import DynoEndpoint


class IdleConnection(Protocol):
    """A pooled keep-alive connection to a dyno, as far as the slot cares."""

    def close(self) -> None: ...


class DynoSlot:
    """The router's view of one web dyno of one app.

    ``in_flight`` counts the requests sent to (or being connected to) the dyno and not yet
    answered; ``routable`` is false once the dyno left its app's route (it gets no new
    request, its idle connections are closed, and finished ones are not pooled).
    ``forget(slot)`` is called once a retired slot has nothing in flight.
    """

    __slots__ = (
        "_drain_waiters",
        "_forget",
        "app",
        "endpoint",
        "idle",
        "in_flight",
        "quarantined_until",
        "routable",
    )

    def __init__(
        self, app: str, endpoint: DynoEndpoint, forget: Callable[[DynoSlot], None]
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.in_flight = 0
        self.quarantined_until = 0.0
        self.routable = True
        self.idle: list[IdleConnection] = []
        self._forget = forget
        self._drain_waiters: list[asyncio.Future[None]] = []

    @property
    def dyno(self) -> str:
        return self.endpoint.dyno

    def enter(self) -> None:
        """A request is now in flight to this dyno."""
        self.in_flight += 1

    def leave(self) -> None:
        """A request to this dyno is over (answered, failed, or given up)."""
        self.in_flight -= 1
        if self.in_flight == 0 and (self._drain_waiters or not self.routable):
            self._drained()

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def move_to(self, endpoint: DynoEndpoint) -> None:
        """The same dyno at a new address: its idle connections and quarantine are stale."""
        self.endpoint = endpoint
        self.close_idle()
        self.quarantined_until = 0.0

    def retire(self) -> None:
        """The dyno left its app's route: no new request, no pooled connection."""
        self.routable = False
        self.close_idle()
        if self.in_flight == 0:
            self._forget(self)

    async def drained(self, timeout: float) -> None:
        """Return once no request is in flight to the dyno, or after ``timeout``."""
        if self.in_flight == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._drain_waiters.remove(waiter)

    def _drained(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if not self.routable:
            self._forget(self)

    def __repr__(self) -> str:
        return f"<DynoSlot {self.app}/{self.dyno} in_flight={self.in_flight}>"
