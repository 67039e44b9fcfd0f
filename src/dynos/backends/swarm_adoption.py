"""A restarted server takes over the dyno services the server before it left on the same home,
so that no dyno restarts: each start of the manager's claims the running task of its slot and
spec in the leftover service of its name (the same release and type), sent back with the
replicas, forced updates, restart policy and grace it has (``core.swarm.kept_on_adoption``).
What no start adopted within ADOPT_WINDOW is removed; the one-shot jobs it left are removed at
once (swarm_jobs.py); its guard is never touched here (removing it would open every node)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from dynos.backends.docker import ENGINE_ERRORS
from dynos.backends.swarm_engine import SwarmService, sync_service
from dynos.backends.swarm_jobs import JOB_ROLES
from dynos.core.containers import LABEL
from dynos.core.swarm import ServiceSpec, kept_on_adoption

log = logging.getLogger("dynos")
ADOPT_WINDOW = 120.0  # seconds a restarted server's starts have to adopt the services left


class Adoption:
    """The services a dead server left, for the starts of the ADOPT_WINDOW to take over."""

    def __init__(self, api: Any, server: str, call: Callable[..., Awaitable[Any]]) -> None:
        self._api = api
        self._call = call
        self.leftovers = leftover_services(api, server)  # by name (blocking)
        self._window: asyncio.Task[None] | None = None
        if self.leftovers:
            log.info("adopting %d dyno services a server before left", len(self.leftovers))

    def adopt(self, wanted: ServiceSpec, services: dict[str, SwarmService]) -> None:
        """``wanted``'s leftover service taken into ``services``, if one is left and not
        taken yet; the window opens with the first start."""
        if wanted.name not in services and wanted.name in self.leftovers:
            services[wanted.name] = adopted_service(wanted, self.leftovers[wanted.name])
        if self.leftovers and self._window is None:
            self._window = asyncio.create_task(self._close_window(services))

    async def _close_window(self, services: Mapping[str, SwarmService]) -> None:
        await asyncio.sleep(ADOPT_WINDOW)
        leftovers, self.leftovers = self.leftovers, {}
        await settle_adoption(leftovers, services, self._call, self._api)

    def left_ids(self) -> list[str]:
        """The services still left (none adopted them yet): the server's close removes them."""
        return [str(s["ID"]) for s in self.leftovers.values()]

    async def cancel(self) -> None:
        if self._window is not None:
            self._window.cancel()
            await asyncio.gather(self._window, return_exceptions=True)


def adopted_service(wanted: ServiceSpec, left: dict[str, Any]) -> SwarmService:
    """A service a dead server left (``left``, as the engine lists it), taken over with the
    replicas, forced updates, restart policy and grace it has."""
    template = left["Spec"]["TaskTemplate"]
    force = int(template.get("ForceUpdate", 0))
    floor = int(left["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0))
    kept = kept_on_adoption(wanted, template)
    return SwarmService(
        wanted.name, kept, id=str(left["ID"]), force=force, floor=floor, left=template
    )


def leftover_services(api: Any, server: str) -> dict[str, dict[str, Any]]:
    """The dyno services a dead server on this home left, by name, for the manager's starts
    to adopt (blocking). Its guard is not among them (removing it would open every node);
    its one-shot jobs are removed here: their restart was forced or given up with it, and
    their dyno's end was told without them."""
    left: list[dict[str, Any]] = api.services(filters={"label": f"{LABEL}.server={server}"})
    dynos = {}
    for service in left:
        role = service["Spec"].get("Labels", {}).get(f"{LABEL}.role")
        if role in JOB_ROLES:
            log.info("removing the %s job %s a server before left", role, service["Spec"]["Name"])
            with contextlib.suppress(*ENGINE_ERRORS):
                api.remove_service(service["ID"])
        elif role != "guard":
            dynos[service["Spec"]["Name"]] = service
    return dynos


async def settle_adoption(
    leftovers: dict[str, dict[str, Any]],
    services: Mapping[str, SwarmService],
    call: Callable[..., Awaitable[Any]],
    api: Any,
) -> None:
    """The adoption window's end: the leftovers no start adopted removed, the adopted ones
    sent with the replicas the manager's dynos need from now."""
    for name, left in leftovers.items():
        adopted = services.get(name)
        with contextlib.suppress(*ENGINE_ERRORS):
            if adopted is None:
                await call(api.remove_service, left["ID"])
            elif adopted.floor:
                adopted.floor = 0
                await sync_service(adopted, call, api)
