"""The routing table: for each app, the web dynos that may take requests now.

The manager owns the contents and pushes every change (a dyno came up, is about to stop, an
app idles or wakes); the router reads it once per request, without touching the store. The
table also keeps what the router learns per dyno while requests run (``DynoSlot``: requests in
flight, a brief quarantine after a refused connect, idle keep-alive connections), which is what
lets the manager drain a dyno before stopping it:

    table.set_app(app, backends_without_it)      # no new request goes to it
    await table.wait_drained(app, dyno, grace)   # the ones it has finish
    ...then SIGTERM

and what lets an idle app wake on its next request (``on_wake``, ``wait_for_backends``).
Everything here runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT = 30.0  # Heroku's H12 threshold
WAKE_RETRY = 75.0  # an app still asleep this long after on_wake is asked to wake again
HOST_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Backend:
    """One web dyno the router can send requests to."""

    dyno: str  # "web.1"
    host: str
    port: int


class IdleConnection(Protocol):
    """A pooled keep-alive connection to a dyno, as far as the table cares."""

    def close(self) -> None: ...


class DynoSlot:
    """The router's view of one web dyno of one app.

    ``in_flight`` counts the requests sent to (or being connected to) the dyno and not yet
    answered; ``routable`` is false once the manager took the dyno out of its app's route (it
    gets no new request, its idle connections are closed, and finished ones are not pooled).
    """

    __slots__ = (
        "_drain_waiters",
        "_table",
        "app",
        "backend",
        "idle",
        "in_flight",
        "quarantined_until",
        "routable",
    )

    def __init__(self, table: RoutingTable, app: str, backend: Backend) -> None:
        self._table = table
        self.app = app
        self.backend = backend
        self.in_flight = 0
        self.quarantined_until = 0.0
        self.routable = True
        self.idle: list[IdleConnection] = []
        self._drain_waiters: list[asyncio.Future[None]] = []

    @property
    def dyno(self) -> str:
        return self.backend.dyno

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

    def _drained(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if not self.routable:
            self._table._forget_slot(self)

    def __repr__(self) -> str:
        return f"<DynoSlot {self.app}/{self.dyno} in_flight={self.in_flight}>"


@dataclass(slots=True, eq=False)
class AppRoute:
    app: str
    backends: tuple[Backend, ...] = ()
    # Why there is no backend, for the error code: web dynos exist but all crashed -> H10,
    # no web dyno in the formation -> H14.
    crashed: bool = False
    # H12: how long a dyno has to start its response.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # The app's only web dyno is asleep: a request wakes it (``on_wake``) and waits for it.
    idle: bool = False
    slots: tuple[DynoSlot, ...] = ()  # one per backend, in the same order
    last_request_at: float = 0.0  # time.monotonic(); when the route was added, before any
    waking_since: float | None = None  # when on_wake was last called and no backend came yet


class RoutingTable:
    """App -> live web dynos, and the per-dyno state the router keeps while requests run.

    ``on_wake``: called with the app's name when a request arrives for an ``idle`` route
    without backends (once per wake, not per request); it must not block.
    """

    def __init__(self, domain: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.domain = domain.lower()
        self.on_wake: Callable[[str], None] | None = None
        # Router processes beside this one (router/processes.py) follow the table: each
        # change is announced, and draining a dyno waits for their requests too.
        self.on_change: Callable[[], None] | None = None
        self.remote_drain: Callable[[str, str, float], Awaitable[None]] | None = None
        self._clock = clock
        self._suffix = "." + self.domain
        self._apps: dict[str, AppRoute] = {}
        self._slots: dict[tuple[str, str], DynoSlot] = {}  # routable, or still busy
        self._hosts: dict[str, AppRoute] = {}  # Host header value -> route, known apps only
        self._backend_waiters: dict[str, list[asyncio.Future[bool]]] = {}

    # ---- what the manager says --------------------------------------------------------------

    def set_app(
        self,
        app: str,
        backends: list[Backend],
        *,
        crashed: bool = False,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        idle: bool = False,
    ) -> None:
        """Replace the app's route. A dyno left out gets no new request from now on.

        Idle keep-alive connections to a left-out dyno (or to a dyno whose address changed)
        are closed at once; its requests in flight go on (see ``wait_drained``).
        """
        route = self._apps.get(app)
        if route is None:
            route = self._apps[app] = AppRoute(app, last_request_at=self._clock())
        route.backends = tuple(backends)
        route.crashed = crashed
        route.request_timeout = request_timeout
        route.idle = idle
        slots = []
        for backend in backends:
            key = (app, backend.dyno)
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = DynoSlot(self, app, backend)
            elif slot.backend != backend:  # the same dyno name at a new address
                slot.backend = backend
                slot.close_idle()
                slot.quarantined_until = 0.0
            slot.routable = True
            slots.append(slot)
        kept = set(slots)
        for old in route.slots:
            if old not in kept:
                self._retire(old)
        route.slots = tuple(slots)
        if slots:
            route.waking_since = None
            self._signal_backends(app, True)
        self._changed()

    def remove_app(self, app: str) -> None:
        route = self._apps.pop(app, None)
        if route is not None:
            self._drop(route)
            self._changed()

    def retain(self, apps: set[str]) -> None:
        """Forget every app not in ``apps`` (destroyed or renamed)."""
        gone = self._apps.keys() - apps
        for app in gone:
            self._drop(self._apps.pop(app))
        if gone:
            self._changed()

    async def wait_drained(self, app: str, dyno: str, timeout: float) -> None:
        """Return once no request is in flight to ``dyno`` of ``app``, or after ``timeout``.

        Take the dyno out of the route first (``set_app`` without it), or new requests keep
        arriving. Returns at once for a dyno the router has no request in flight to.
        """
        if self.remote_drain is not None:
            await asyncio.gather(
                self._wait_drained_here(app, dyno, timeout),
                self.remote_drain(app, dyno, timeout),
            )
        else:
            await self._wait_drained_here(app, dyno, timeout)

    async def _wait_drained_here(self, app: str, dyno: str, timeout: float) -> None:
        slot = self._slots.get((app, dyno))
        if slot is None or slot.in_flight == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        slot._drain_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                slot._drain_waiters.remove(waiter)

    async def wait_for_backends(self, app: str, timeout: float) -> bool:
        """Whether ``app`` has a web dyno to route to, waiting up to ``timeout`` for one."""
        route = self._apps.get(app)
        if route is not None and route.slots:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._backend_waiters.setdefault(app, [])
        waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                self._backend_waiters.pop(app, None)

    def last_request_at(self, app: str) -> float:
        """``time.monotonic()`` of the app's last request (of its route's creation before any).

        0.0 for an app the table does not know.
        """
        route = self._apps.get(app)
        return 0.0 if route is None else route.last_request_at

    def note_request(self, app: str, at: float) -> None:
        """Another router process served ``app`` at ``at`` (``time.monotonic()``)."""
        route = self._apps.get(app)
        if route is not None and at > route.last_request_at:
            route.last_request_at = at

    def wake(self, app: str) -> None:
        """Another router process holds a request for ``app``, which sleeps: wake it."""
        route = self._apps.get(app)
        if route is not None and route.idle and not route.slots:
            self.request_wake(route, self._clock())

    def snapshot(self) -> list[dict[str, Any]]:
        """The routes as the manager set them, for another router process (JSON-ready)."""
        return [
            {
                "app": route.app,
                "backends": [[b.dyno, b.host, b.port] for b in route.backends],
                "crashed": route.crashed,
                "request_timeout": route.request_timeout,
                "idle": route.idle,
            }
            for route in self._apps.values()
        ]

    def apply_snapshot(self, routes: list[dict[str, Any]]) -> None:
        """Make this table route as the one that took ``snapshot`` does."""
        for route in routes:
            self.set_app(
                route["app"],
                [Backend(dyno, host, port) for dyno, host, port in route["backends"]],
                crashed=route["crashed"],
                request_timeout=route["request_timeout"],
                idle=route["idle"],
            )
        self.retain({route["app"] for route in routes})

    def in_flight(self, app: str, dyno: str) -> int:
        """Requests in flight to one dyno (for the manager's logs and the tests)."""
        slot = self._slots.get((app, dyno))
        return 0 if slot is None else slot.in_flight

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # ---- what the router asks -----------------------------------------------------------------

    def lookup(self, host: str) -> AppRoute | None:
        """The route for a ``Host`` header value (``foo.localhost:5000`` -> app ``foo``)."""
        route = self._hosts.get(host)
        if route is not None:
            return route
        name = host.split(":", 1)[0].lower()
        if not name.endswith(self._suffix):
            return None
        route = self._apps.get(name[: -len(self._suffix)])
        if route is not None:
            if len(self._hosts) >= HOST_CACHE_SIZE:
                self._hosts.clear()
            self._hosts[host] = route
        return route

    def request_wake(self, route: AppRoute, now: float) -> None:
        """A request waits for ``route`` to get a backend: ask ``on_wake``, once per wake."""
        if route.waking_since is not None and now - route.waking_since < WAKE_RETRY:
            return
        route.waking_since = now
        if self.on_wake is not None:
            try:
                self.on_wake(route.app)
            except Exception:  # the waiting requests time out with H20; the router goes on
                log.exception("on_wake(%r) failed", route.app)

    # ---- inside -------------------------------------------------------------------------------

    def _retire(self, slot: DynoSlot) -> None:
        slot.routable = False
        slot.close_idle()
        if slot.in_flight == 0:
            self._forget_slot(slot)

    def _forget_slot(self, slot: DynoSlot) -> None:
        key = (slot.app, slot.dyno)
        if self._slots.get(key) is slot:
            del self._slots[key]

    def _drop(self, route: AppRoute) -> None:
        self._hosts.clear()
        for slot in route.slots:
            self._retire(slot)
        route.slots = ()
        route.backends = ()
        self._signal_backends(route.app, False)

    def _signal_backends(self, app: str, found: bool) -> None:
        for waiter in self._backend_waiters.get(app, ()):
            if not waiter.done():
                waiter.set_result(found)
