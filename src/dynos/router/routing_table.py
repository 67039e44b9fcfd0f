"""The routing table: for each app, the web dynos that may take requests now.

The manager owns the routes (route.py: plain values) and pushes every change: a dyno came up,
is about to stop, an app idles or wakes. The router reads the table once per request, without
touching the store, and keeps its live state per dyno in the table's ``DynoSlot``s
(dyno_slot.py). This module joins the two: a route set here retires the slots of the dynos
it leaves out, so that the manager can drain them (``wait_drained``), and an idle app's
request asks for it to wake (``request_wake``) and waits for a dyno (``wait_for_backends``).

Its hooks come with the table: ``on_wake`` is how a request wakes a sleeping app (the
manager's ``wake_app``; in a router process, a message to the server), ``followers`` the
router processes beside this one (processes.py), which route as this table does.
Everything here runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from dynos.core.app_settings import DEFAULT_REQUEST_TIMEOUT
from dynos.router.dyno_slot import DynoSlot
from dynos.router.route import (
    DynoEndpoint,
    Route,
    app_for_host,
    host_name,
    routes_from_json,
    routes_to_json,
)

log = logging.getLogger(__name__)

WAKE_RETRY = 75.0  # an app still asleep this long after on_wake is asked to wake again
HOST_CACHE_SIZE = 1024

# An open ACME HTTP-01 challenge: the host names its token was given for, and the answer
# (the key authorization). The router answers them itself: challenges.py.
Challenge = tuple[frozenset[str], bytes]


class RouteFollowers(Protocol):
    """Router processes that route as this table does (processes.py's ``RouterProcesses``):
    told of each change, and drained along with this process."""

    def routes_changed(self) -> None: ...

    async def drain(self, app: str, dyno: str, timeout: float) -> None: ...


class AppRoute:
    """One app in the table: its ``route`` as the manager set it, one ``DynoSlot`` per
    endpoint (in the same order), and what the router learns as requests come."""

    __slots__ = ("app", "last_request_at", "route", "slots", "waking_since")

    def __init__(self, route: Route, created_at: float) -> None:
        self.app = route.app
        self.route = route
        self.slots: tuple[DynoSlot, ...] = ()
        # time.monotonic() of the last request; the route's creation before any.
        self.last_request_at = created_at
        # When on_wake was last asked to wake the app and no dyno came since.
        self.waking_since: float | None = None

    @property
    def endpoints(self) -> tuple[DynoEndpoint, ...]:
        return self.route.endpoints

    @property
    def crashed(self) -> bool:
        return self.route.crashed

    @property
    def idle(self) -> bool:
        return self.route.idle

    @property
    def request_timeout(self) -> float:
        return self.route.request_timeout


class RoutingTable:
    """App -> its route and its live dyno slots.

    ``on_wake``: called with the app's name when a request arrives for an ``idle`` route
    without dynos (once per wake, not per request); it must not block. ``followers``: the
    other router processes, if any. ``clock``: ``time.monotonic`` or a test's.
    """

    def __init__(
        self,
        domain: str,
        *,
        on_wake: Callable[[str], None] | None = None,
        followers: RouteFollowers | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domain = domain.lower()
        self._on_wake = on_wake
        self._followers = followers
        self._clock = clock
        self._suffix = "." + self.domain
        self._apps: dict[str, AppRoute] = {}
        self._slots: dict[tuple[str, str], DynoSlot] = {}  # routable, or still busy
        self._hosts: dict[str, AppRoute] = {}  # Host header value -> route, known apps only
        # A custom domain's hostname -> its app's route (Route.hosts of every app).
        self._custom_hosts: dict[str, AppRoute] = {}
        self._dyno_waiters: dict[str, list[asyncio.Future[bool]]] = {}
        # token -> Challenge, while an ACME order is open; written by challenges.ChallengeBoard
        # (or a router process's copy of it), read per request only when not empty.
        self.challenges: dict[str, Challenge] = {}
        # Names under the domain served by the platform itself (``git``): routed as apps
        # are, never replaced or dropped by the manager's routes.
        self._platform: set[str] = set()

    # ---- what the server says ---------------------------------------------------------------

    def set_platform_route(self, name: str, endpoint: DynoEndpoint, request_timeout: float) -> None:
        """Route ``name.<domain>`` to a service of the platform at ``endpoint`` (the git
        service): an entry like an app's, so that requests to it take the same path."""
        self._platform.add(name)
        self._set_route(Route(name, (endpoint,), request_timeout=request_timeout))
        self._changed()

    # ---- what the manager says --------------------------------------------------------------

    def set_app(
        self,
        app: str,
        endpoints: Iterable[DynoEndpoint],
        *,
        crashed: bool = False,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        idle: bool = False,
        hosts: Iterable[str] = (),
    ) -> None:
        """Replace the app's route. A dyno left out gets no new request from now on.
        ``hosts``: its custom domains (lowercase hostnames), which route to it too.

        Idle keep-alive connections to a left-out dyno (or to a dyno whose address changed)
        are closed at once; its requests in flight go on (see ``wait_drained``). A name the
        platform serves itself is not an app's (platform.RESERVED_NAMES): left as it is.
        """
        if app in self._platform:
            log.warning("an app named %r is not routed: the platform serves that host", app)
            return
        route = Route(
            app,
            tuple(endpoints),
            crashed=crashed,
            request_timeout=request_timeout,
            idle=idle,
            hosts=tuple(hosts),
        )
        self._set_route(route)
        self._changed()

    def remove_app(self, app: str) -> None:
        route = self._apps.pop(app, None)
        if route is not None:
            self._drop(route)
            self._changed()

    def retain(self, apps: set[str]) -> None:
        """Forget every app not in ``apps`` (destroyed or renamed); platform routes stay."""
        gone = self._apps.keys() - apps - self._platform
        for app in gone:
            self._drop(self._apps.pop(app))
        if gone:
            self._changed()

    async def wait_drained(self, app: str, dyno: str, timeout: float) -> None:
        """Return once no request is in flight to ``dyno`` of ``app``, or after ``timeout``,
        in this process and in its followers.

        Take the dyno out of the route first (``set_app`` without it), or new requests keep
        arriving. Returns at once for a dyno the router has no request in flight to.
        """
        slot = self._slots.get((app, dyno))
        if self._followers is None:
            if slot is not None:
                await slot.drained(timeout)
            return
        waits = [self._followers.drain(app, dyno, timeout)]
        if slot is not None:
            waits.append(slot.drained(timeout))
        await asyncio.gather(*waits)

    async def wait_followers(self, timeout: float) -> None:
        """Return once the router processes beside this one route as this table does now,
        or after ``timeout``. They apply the table's changes in the order sent, and answer a
        drain of a dyno they have no request for at once: a drain of no dyno (app and dyno
        ``""``, names nothing can have) comes back once the changes before it are applied."""
        if self._followers is not None:
            await self._followers.drain("", "", timeout)

    def last_request_at(self, app: str) -> float:
        """``time.monotonic()`` of the app's last request (of its route's creation before any).

        0.0 for an app the table does not know.
        """
        route = self._apps.get(app)
        return 0.0 if route is None else route.last_request_at

    def in_flight(self, app: str, dyno: str) -> int:
        """Requests in flight to one dyno (for the manager's logs and the tests)."""
        slot = self._slots.get((app, dyno))
        return 0 if slot is None else slot.in_flight

    # ---- the router processes beside this one -------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """The routes as the manager set them, for another router process (JSON-ready)."""
        return routes_to_json([route.route for route in self._apps.values()])

    def apply_snapshot(self, routes: list[dict[str, Any]]) -> None:
        """Make this table route as the one that took ``snapshot`` does."""
        given = routes_from_json(routes)
        for route in given:
            self._set_route(route)
        self._changed()
        self.retain({route.app for route in given})

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

    # ---- what the router asks -----------------------------------------------------------------

    def lookup(self, host: str) -> AppRoute | None:
        """The route for a ``Host`` header value (``foo.localhost:5000`` -> app ``foo``; a
        custom domain's hostname -> its app). One dict lookup once the value was seen: the
        first request with it finds it and remembers it."""
        route = self._hosts.get(host)
        if route is not None:
            return route
        # An app's own name first: a custom domain never shadows one (the platform refuses
        # custom domains under its domain, but a server may start with another --domain).
        app = app_for_host(host, self._suffix)
        route = None if app is None else self._apps.get(app)
        if route is None:
            route = self._custom_hosts.get(host_name(host))
        if route is not None:
            if len(self._hosts) >= HOST_CACHE_SIZE:
                self._hosts.clear()
            self._hosts[host] = route
        return route

    def request_wake(self, route: AppRoute, now: float) -> None:
        """A request waits for ``route`` to get a dyno: ask ``on_wake``, once per wake."""
        if route.waking_since is not None and now - route.waking_since < WAKE_RETRY:
            return
        route.waking_since = now
        if self._on_wake is not None:
            try:
                self._on_wake(route.app)
            except Exception:  # the waiting requests time out with H20; the router goes on
                log.exception("on_wake(%r) failed", route.app)

    async def wait_for_backends(self, app: str, timeout: float) -> bool:
        """Whether ``app`` has a web dyno to route to, waiting up to ``timeout`` for one."""
        route = self._apps.get(app)
        if route is not None and route.slots:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._dyno_waiters.setdefault(app, [])
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
                self._dyno_waiters.pop(app, None)

    # ---- inside -------------------------------------------------------------------------------

    def _set_route(self, given: Route) -> None:
        app = given.app
        route = self._apps.get(app)
        if route is None:
            route = self._apps[app] = AppRoute(given, self._clock())
            old_hosts: tuple[str, ...] = ()
            self._hosts.clear()  # its name may have been remembered as a custom domain
        else:
            old_hosts = route.route.hosts
        route.route = given
        if given.hosts != old_hosts:
            self._move_hosts(route, old_hosts, given.hosts)
        slots = []
        for endpoint in given.endpoints:
            key = (app, endpoint.dyno)
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = DynoSlot(app, endpoint, self._forget_slot)
            elif slot.endpoint != endpoint:
                slot.move_to(endpoint)
            slot.routable = True
            slots.append(slot)
        kept = set(slots)
        for old in route.slots:
            if old not in kept:
                old.retire()
        route.slots = tuple(slots)
        if slots:
            route.waking_since = None
            self._signal_dynos(app, True)

    def _forget_slot(self, slot: DynoSlot) -> None:
        key = (slot.app, slot.dyno)
        if self._slots.get(key) is slot:
            del self._slots[key]

    def _move_hosts(self, route: AppRoute, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        """The app's custom domains changed from ``old`` to ``new``. A hostname goes to the
        route that names it last, and leaves only by the route that holds it: when a domain
        moves between two apps, their routes come in one publish, in either order."""
        for name in old:
            if self._custom_hosts.get(name) is route:
                del self._custom_hosts[name]
        for name in new:
            self._custom_hosts[name] = route
        self._hosts.clear()  # a remembered Host value may name a domain that moved

    def _drop(self, route: AppRoute) -> None:
        self._hosts.clear()
        for name in route.route.hosts:
            if self._custom_hosts.get(name) is route:
                del self._custom_hosts[name]
        for slot in route.slots:
            slot.retire()
        route.slots = ()
        self._signal_dynos(route.app, False)

    def _signal_dynos(self, app: str, found: bool) -> None:
        for waiter in self._dyno_waiters.get(app, ()):
            if not waiter.done():
                waiter.set_result(found)

    def _changed(self) -> None:
        if self._followers is not None:
            self._followers.routes_changed()
