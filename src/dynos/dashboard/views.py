"""What the dashboard's pages and scripts show, read through the platform's use-cases (the
same door the API goes through) and shaped into plain values for templates and JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynos.core.sizes import SIZES
from dynos.platform.models import App, Dyno
from dynos.platform.platform import Platform

SIZE_NAMES = [size.name for size in SIZES]
RELEASES_SHOWN = 25  # the newest; `dynos releases` lists them all


@dataclass(frozen=True)
class AppSummary:
    name: str
    url: str
    release: int | None
    formation: str  # "web=2:Standard-1X worker=1:Basic", as ps:scale prints it
    dynos_up: int
    dynos: int


async def app_summaries(platform: Platform, router_url: str) -> list[AppSummary]:
    summaries = []
    for app in await platform.list_apps():
        release = await platform.releases.current(app)
        formation = await platform.dynos.formation(app)
        dynos = platform.dynos.list(app)
        summaries.append(
            AppSummary(
                name=app.name,
                url=router_url.format(app=app.name),
                release=release.version if release else None,
                formation=" ".join(f"{f.type}={f.quantity}:{f.size.name}" for f in formation),
                dynos_up=sum(1 for d in dynos if str(d.state) == "up"),
                dynos=len(dynos),
            )
        )
    return summaries


def dyno_json(dyno: Dyno) -> dict[str, Any]:
    node = getattr(dyno, "node", None)  # a cluster backend's dynos say where they run
    return {
        "name": dyno.name,
        "type": dyno.type,
        "state": str(dyno.state),
        "size": dyno.size.name,
        "release": dyno.release_version,
        "command": dyno.command,
        "node": str(node) if node is not None else None,
        "updated_at": dyno.updated_at.isoformat(timespec="seconds"),
    }


async def processes(platform: Platform, app: App) -> dict[str, Any]:
    """The formation and the dynos: what the app page shows and its script refreshes."""
    release = await platform.releases.current(app)
    commands = release.processes if release else {}
    formation = [
        {
            "type": f.type,
            "quantity": f.quantity,
            "size": f.size.name,
            "command": commands.get(f.type, ""),
        }
        for f in await platform.dynos.formation(app)
    ]
    dynos = [dyno_json(d) for d in platform.dynos.list(app)]
    return {
        "formation": formation,
        "dynos": dynos,
        "has_nodes": any(d["node"] is not None for d in dynos),
    }


async def app_page(platform: Platform, app: App, router_url: str) -> dict[str, Any]:
    """Everything the app page renders on load."""
    live = await platform.releases.current(app)
    every = await platform.releases.list(app)
    releases = [
        {
            "version": r.version,
            "description": r.description,
            "status": str(r.status),
            "created_at": r.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "live": live is not None and r.id == live.id,
            "can_roll_back": r.slug_id is not None and (live is None or r.id != live.id),
        }
        for r in sorted(every, key=lambda r: -r.version)[:RELEASES_SHOWN]
    ]
    addons = await platform.addons.list(app) if platform.addons is not None else []
    return {
        "app": {"name": app.name, "url": router_url.format(app=app.name)},
        **await processes(platform, app),
        "sizes": SIZE_NAMES,
        "releases": releases,
        "more_releases": max(len(every) - RELEASES_SHOWN, 0),
        "config_names": sorted(await platform.releases.config(app)),
        "addons": [{"name": a.name, "plan": a.plan, "config_var": a.config_var} for a in addons],
    }
