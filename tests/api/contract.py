"""The Heroku Platform API schema as a test oracle: validate a response against a link.

``heroku-platform-api-schema.json`` next to this file is a verbatim copy of the reference
schema (heroku/heroku-go, v5/schema.json, MIT; see ../../../shared/reference/README.md), kept
here so that the contract tests need nothing outside the repository.

Relaxed, and nothing else — each keyword below cannot hold on a self-hosted platform:

- ``app.web_url`` ``pattern`` (``^https?://...\\.herokuapp\\.com/$``): an app's URL is on the
  platform's own domain (``http://<app>.localhost:5000/``). Its ``type`` and ``format: uri``
  still apply.
- ``app.git_url`` ``pattern`` (``^https://git\\.heroku\\.com/<app>\\.git$``): dynos has no git
  server (apps deploy by upload), so it is the empty string. Its ``type`` still applies.

On top of the schema, two checks make it bite: every property a definition lists must be
present (clients read them without checking: a missing one is an ``undefined`` in the
heroku CLI), and ``date-time`` means ISO 8601 in UTC, ``2026-11-27T03:50:00Z``.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker

SCHEMA_PATH = Path(__file__).with_name("heroku-platform-api-schema.json")

RELAXED: dict[tuple[str, str], tuple[str, str]] = {
    # (definition, property): (keyword removed, why)
    ("app", "web_url"): ("pattern", "apps are served on the platform's own domain"),
    ("app", "git_url"): ("pattern", "no git server: empty string, deploys are uploads"),
}

UTC_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

formats = FormatChecker()


@formats.checks("date-time")
def _utc_timestamp(value: object) -> bool:
    return not isinstance(value, str) or UTC_TIMESTAMP.match(value) is not None


@formats.checks("uuid", raises=ValueError)
def _uuid(value: object) -> bool:
    return not isinstance(value, str) or str(uuid.UUID(value)) == value


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    relaxed = copy.deepcopy(loaded)
    for (definition, prop), (keyword, _why) in RELAXED.items():
        del relaxed["definitions"][definition]["definitions"][prop][keyword]
    return relaxed


def link(definition: str, title: str) -> dict[str, Any]:
    """The link (endpoint) called ``title`` of ``definition``, e.g. ("app", "List")."""
    for candidate in schema()["definitions"][definition]["links"]:
        if candidate["title"] == title:
            return candidate  # type: ignore[no-any-return]
    raise KeyError(f"{definition} has no link {title!r}")


def problems(body: object, definition: str, title: str) -> list[str]:
    """Everything wrong with ``body`` as the answer of that link; empty when it conforms."""
    target = link(definition, title).get("targetSchema") or {"$ref": f"#/definitions/{definition}"}
    validator = Draft4Validator(
        {**target, "definitions": schema()["definitions"]}, format_checker=formats
    )
    found = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]
    found += _missing(body, target)
    return found


def _missing(body: object, target: dict[str, Any]) -> list[str]:
    """Properties the target's definition lists that ``body`` (or an item of it) lacks."""
    if "items" in target:
        items = body if isinstance(body, list) else []
        return [m for item in items for m in _missing(item, target["items"])]
    ref = target.get("$ref", "")
    parts = ref.removeprefix("#/").split("/")
    if len(parts) != 2 or not isinstance(body, dict):  # a sub-definition such as config_vars
        return []
    declared = schema()["definitions"][parts[1]].get("properties", {})
    return [f"missing property {name!r}" for name in declared if name not in body]
