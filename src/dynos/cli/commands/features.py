"""``features``, ``features:info``, ``features:enable``, ``features:disable``: an app's
features (the Platform API's app features), in the heroku CLI's words and output.

``preboot``: a new release's web dynos start beside the old ones and take the traffic only
once they all pass their health checks. ``labs``, ``labs:enable``, ``labs:disable``: the
same for the app's experimental features (Heroku Labs), today ``log-runtime-metrics``: every
20 s, each dyno's memory and load as ``heroku[web.1]`` lines in the app's log.
"""

from __future__ import annotations

from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object
from dynos.errors import UserError


def format_features(app: str, features: list[dict[str, Any]], *, labs: bool = False) -> list[str]:
    """``features``' list (the general ones) or, with ``labs``, ``labs``' (the others)."""
    shown = sorted(
        (f for f in features if (f.get("state") == "general") != labs), key=lambda f: f["name"]
    )
    width = max((len(f["name"]) for f in shown), default=0)
    lines = [header(f"App Features ({app})" if labs else f"App Features {app}")]
    for f in shown:
        mark = "[+]" if f["enabled"] else "[ ]"
        lines.append(f"{mark} {f['name'].ljust(width)}  {f['description']}")
    return lines


@click.command()
@app_option
def features_list(app: str | None) -> None:
    """List the app's features and whether each is enabled."""
    name = require_app(app)
    with connect() as api:
        echo_lines(format_features(name, api.get(app_path(name, "features")) or []))


@click.command()
@app_option
def labs_list(app: str | None) -> None:
    """List the app's experimental features (Heroku Labs) and whether each is enabled."""
    name = require_app(app)
    with connect() as api:
        echo_lines(format_features(name, api.get(app_path(name, "features")) or [], labs=True))


@click.command()
@app_option
@click.argument("feature")
def features_info(app: str | None, feature: str) -> None:
    """Show one feature: what it does, its documentation, whether it is enabled."""
    name = require_app(app)
    with connect() as api:
        found = api.get(app_path(name, f"features/{feature}")) or {}
    shown = {"Description": found.get("description"), "Docs": found.get("doc_url")}
    shown["Enabled"] = "true" if found.get("enabled") else "false"
    echo_lines([header(str(found.get("name", feature))), *styled_object(shown)])


def _switch(app: str | None, feature: str, enabled: bool) -> None:
    name = require_app(app)
    verb = "Enabling" if enabled else "Disabling"
    with connect() as api, action(f"{verb} {feature} for {app_label(name)}"):
        path = app_path(name, f"features/{feature}")
        current = api.get(path) or {}
        if current.get("enabled") is enabled:
            raise UserError(f"{feature} is already {'enabled' if enabled else 'disabled'}.")
        api.patch(path, {"enabled": enabled})


@click.command()
@app_option
@click.argument("feature")
def features_enable(app: str | None, feature: str) -> None:
    """Enable a feature, e.g. features:enable preboot (no dyno restarts)."""
    _switch(app, feature, True)


@click.command()
@app_option
@click.argument("feature")
def features_disable(app: str | None, feature: str) -> None:
    """Disable a feature (no dyno restarts)."""
    _switch(app, feature, False)


COMMANDS: dict[str, click.Command] = {
    "features": features_list,
    "features:info": features_info,
    "features:enable": features_enable,
    "features:disable": features_disable,
    "labs": labs_list,
    "labs:enable": features_enable,
    "labs:disable": features_disable,
}
