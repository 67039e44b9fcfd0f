"""``GET /apps/{app}/metrics?process_type=web&window=1h``: an app's Heroku-style metrics
(platform/metrics.py), columnar, as a plotting library (uPlot) takes them.

``window`` is ``1h``, ``6h`` or ``24h`` (one-minute steps) or ``7d`` (ten-minute steps);
``process_type`` defaults to ``web``. Every series has one value per step, ``null`` where
nothing was measured; ``router_errors`` names only the H codes seen in the window. docs/api.md
describes each field.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.lists import JSON
from dynos.errors import UserError
from dynos.platform.metrics import MetricsReport
from dynos.platform.platform import Platform


def metrics_report(report: MetricsReport) -> JSON:
    return {
        "app": report.app,
        "process_type": report.process_type,
        "window": report.window,
        "step_seconds": report.step_seconds,
        "series": report.series,
        "router_errors": report.router_errors,
        "memory_quota_mb": report.memory_quota_mb,
        "events": [
            {"at": round(e.at, 3), "kind": e.kind, "message": e.message} for e in report.events
        ],
    }


def _one(request: Request, name: str, default: str) -> str:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise UserError(f"Give {name} once.")
    return values[0] if values else default


def app_metrics_routes(platform: Platform) -> list[BaseRoute]:
    async def get_metrics(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        process_type = _one(request, "process_type", "web")
        window = _one(request, "window", "1h")
        report = await platform.metrics.report(app, process_type, window)
        return JSONResponse(metrics_report(report))

    return [Route("/apps/{app}/metrics", get_metrics)]
