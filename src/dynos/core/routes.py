"""Where the router sends an app's requests: a pure function of the app's web dynos.

The manager's publisher (manager/publisher.py) pushes the result to the router's table after
every change of a dyno's state; nothing here knows of the table or of the manager's records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dynos.core.app_settings import DEFAULT_REQUEST_TIMEOUT
from dynos.core.states import DynoState


class WebDyno(Protocol):
    """What routing reads of a web dyno (the manager's ``DynoRecord`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> DynoState: ...

    @property
    def port(self) -> int | None: ...

    @property
    def host(self) -> str: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def restart_requested(self) -> bool: ...

    @property
    def held(self) -> bool:
        """A preboot's new dyno, kept out of the rotation until all of them passed."""
        ...


@dataclass(frozen=True)
class AppRoutes:
    """One app's entry in the router's table."""

    app_name: str
    # (dyno name, host, port) of each dyno that gets requests
    upstreams: tuple[tuple[str, str, int], ...]
    crashed: bool  # every web dyno crashed and none is coming back soon: H10
    idle: bool  # none is routable but one is coming (booting, waking, restarting): hold requests
    request_timeout: float
    hosts: tuple[str, ...] = ()  # its custom domains: more hostnames that route to it


def routes_from_dynos(
    app_name: str,
    settings: Mapping[str, object],
    web: Sequence[WebDyno],
    hosts: Sequence[str] = (),
) -> AppRoutes:
    """The routes of app ``app_name`` with web dynos ``web`` and app settings ``settings``;
    ``hosts`` are its custom domains, routed as its own hostname is.

    A dyno gets requests once it is up, has a port, is not being stopped and is not held back
    by a preboot (which switches all of a release's new dynos in at once). An app whose
    web dynos are all starting, restarting or idle is marked ``idle``: the router holds its
    requests (waking it if needed) instead of failing them.
    """
    upstreams = tuple(
        (d.name, d.host, d.port)
        for d in web
        if d.state is DynoState.UP and not d.stopping and not d.held and d.port is not None
    )
    crashed = bool(web) and all(d.state is DynoState.CRASHED for d in web)
    coming = any(
        d.state in (DynoState.STARTING, DynoState.IDLE, DynoState.DOWN)
        or d.restart_requested
        or d.stopping
        for d in web
    )
    timeout = settings.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
    return AppRoutes(
        app_name,
        upstreams,
        crashed=crashed and not coming,
        idle=not upstreams and coming,
        request_timeout=float(timeout),  # type: ignore[arg-type]
        hosts=tuple(hosts),
    )
