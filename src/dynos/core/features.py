"""App features (Heroku's "labs" capabilities an app turns on or off): which exist here.

Only features dynos acts on are listed: a feature that could be enabled and then did nothing
would tell its user something false. Today that is ``preboot`` (manager/preboot.py) and
``log-runtime-metrics`` (manager/usage.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dynos.errors import NotFound, UserError

# Feature ids are the same on every server for the same app: a uuid5 of the app and name.
_FEATURE_IDS = uuid.UUID("6f0d3c2e-8d7a-4f43-9a4b-0d5f6e2c9b11")


@dataclass(frozen=True)
class Feature:
    name: str
    display_name: str
    description: str
    doc_url: str
    state: str = "general"  # Heroku's: the CLI's `features` lists only general ones


PREBOOT = Feature(
    "preboot",
    "Preboot",
    "Provide seamless web dyno deploys",
    "https://devcenter.heroku.com/articles/preboot",
)
LOG_RUNTIME_METRICS = Feature(
    "log-runtime-metrics",
    "Log runtime metrics",
    "Emit dyno resource usage information into app logs",
    "https://devcenter.heroku.com/articles/log-runtime-metrics",
    state="beta",
)
FEATURES: dict[str, Feature] = {f.name: f for f in (PREBOOT, LOG_RUNTIME_METRICS)}


def feature_id(app_id: str, name: str) -> str:
    return str(uuid.uuid5(_FEATURE_IDS, f"{app_id}/{name}"))


def find_feature(app_id: str, name_or_id: str) -> Feature:
    """The feature called ``name_or_id`` (or with the id it has for this app)."""
    for feature in FEATURES.values():
        if name_or_id in (feature.name, feature_id(app_id, feature.name)):
            return feature
    raise NotFound(
        f"Couldn't find that feature ({name_or_id!r}). Features: {', '.join(FEATURES)}; "
        "list them with 'dynos features'."
    )


def parse_enabled(body: object) -> bool:
    """The ``enabled`` of a feature update's body: a boolean, required."""
    enabled = body.get("enabled") if isinstance(body, dict) else None
    if not isinstance(enabled, bool):
        raise UserError('Send {"enabled": true} or {"enabled": false} to change a feature.')
    return enabled
