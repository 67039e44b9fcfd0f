"""Heroku Platform API v3 shapes of dynos' records (field names from the reference schema).

Every shape carries every property its definition in the reference schema lists (clients
read them without checking), plus the few extras the heroku CLI reads that the published
schema lacks (an app's ``generation`` and ``create_status``, a release's
``eligible_for_rollback``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from dynos.core.hostnames import DomainKind
from dynos.core.release_phase import ReleaseStatus
from dynos.core.sizes import SIZES, DynoSize, find_size
from dynos.platform.models import Account, App, Domain, Dyno, Formation, Release, SniEndpoint

JSON = dict[str, Any]

STACK = {"id": "6f4cd4e1-6d5a-4c63-a7bd-6a1c1b4b9e01", "name": "dynos-local"}
REGION = {"id": "0f3b8a5e-0d1c-4a5e-9a43-8c4a6b1e2d02", "name": "local"}
# dynos runs apps as Heroku's Cedar generation does: Procfile process types, dynos named
# web.1, log sessions with a backlog. The heroku CLI picks its behaviour by this name.
GENERATION = {"id": "4a3b2c1d-5e6f-4a7b-8c9d-0e1f2a3b4c03", "name": "cedar"}
_SIZE_IDS = uuid.UUID("5c1f0b4e-2d3a-4b6c-9e8f-7a6b5c4d3e04")  # namespace of size ids


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account(acc: Account, created_at: datetime) -> JSON:
    return {
        "id": acc.id,
        "email": acc.email,
        "name": acc.email.split("@", 1)[0],
        "allow_tracking": False,
        "beta": False,
        "created_at": timestamp(created_at),
        "updated_at": timestamp(created_at),
        "last_login": None,
        "verified": True,
        "two_factor_authentication": False,
        "federated": False,
        "default_organization": None,
        "default_team": None,
        "identity_provider": None,
        "sms_number": None,
        "suspended_at": None,
        "delinquent_at": None,
        "country_of_residence": None,
    }


def app(
    record: App,
    acc: Account,
    web_url: str,
    released_at: datetime | None,
    git_url: str = "",
    *,
    acm: bool = False,
) -> JSON:
    """An app; ``git_url`` is where ``git push`` deploys it (empty on a server without
    the git service). ``acm``: whether Automatic Certificate Management is on."""
    return {
        "id": record.id,
        "name": record.name,
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "released_at": timestamp(released_at) if released_at else None,
        "web_url": web_url,
        "git_url": git_url,
        "owner": {"id": acc.id, "email": acc.email},
        "organization": None,
        "team": None,
        "space": None,
        "region": REGION,
        "stack": STACK,
        "build_stack": STACK,
        "buildpack_provided_description": None,
        "maintenance": False,
        "acm": acm,
        "archived_at": None,
        "internal_routing": None,
        "repo_size": None,
        "slug_size": None,
        "generation": GENERATION,
        "create_status": "complete",
    }


def release(
    record: Release, app_record: App, acc: Account, current: bool, output_url: str | None
) -> JSON:
    """A release; ``output_url`` is where its release phase's output streams (None without
    one), ``current`` whether it is the live release."""
    return {
        "id": record.id,
        "version": record.version,
        "description": record.description,
        "status": str(record.status),
        "current": current,
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at or record.created_at),
        "app": {"id": app_record.id, "name": app_record.name},
        "slug": {"id": record.slug_id} if record.slug_id else None,
        "user": {"id": acc.id, "email": acc.email},
        "addon_plan_names": [],
        "output_stream_url": output_url,
        # A failed release never ran: the heroku CLI's `rollback` skips to one that did.
        "eligible_for_rollback": record.slug_id is not None
        and record.status is ReleaseStatus.SUCCEEDED,
    }


def formation(record: Formation, app_record: App, command: str) -> JSON:
    return {
        "id": record.id,
        "type": record.type,
        "quantity": record.quantity,
        "size": record.size.name,
        "command": command,
        "app": {"id": app_record.id, "name": app_record.name},
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
    }


def dyno(record: Dyno) -> JSON:
    return {
        "id": record.id,
        "name": record.name,
        "type": record.type,
        "size": record.size.name,
        "state": str(record.state),
        "command": record.command,
        "attach_url": None,
        "node": record.node,  # a cluster backend's node (swarm), null on this machine
        "app": {"id": record.app_id, "name": record.app_name},
        "release": {"id": record.release_id, "version": record.release_version},
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
    }


def size_id(size: DynoSize) -> str:
    """A size's id: a UUID derived from its name, the same on every dynos."""
    return str(uuid.uuid5(_SIZE_IDS, size.name))


def dyno_size(size: DynoSize) -> JSON:
    return {
        "id": size_id(size),
        "name": size.name,
        "compute": size.compute,
        "memory": size.memory_mb / 1024,
        "cost": None,
        "dedicated": False,
        "dyno_units": size.cpu_share,
        "private_space_only": False,
    }


def dyno_sizes() -> list[JSON]:
    return [dyno_size(size) for size in SIZES]


def size_by_name_or_id(name_or_id: str) -> JSON:
    """The size called (or with the id) ``name_or_id``; UserError when there is none."""
    for size in SIZES:
        if size_id(size) == name_or_id:
            return dyno_size(size)
    return dyno_size(find_size(name_or_id))


def domain(
    record: Domain,
    app_record: App,
    dns_target: str,
    acm: tuple[str | None, str | None] = (None, None),
    sni_endpoint: SniEndpoint | None = None,
) -> JSON:
    """An app's domain. A custom one is routed as soon as it is added (``status``
    ``succeeded``), and its DNS record should point at ``dns_target``, the app's own hostname;
    the app's own domain has no record to make (``none``). ``acm``: its ``acm_status`` and
    ``acm_status_reason`` (null while ACM is off). ``sni_endpoint``: the app's certificate
    the router serves for it (``{id, name}``), null where the platform's serves it."""
    custom = record.kind is DomainKind.CUSTOM
    return {
        "id": record.id,
        "hostname": record.hostname,
        "kind": str(record.kind),
        "cname": dns_target if custom else None,
        "status": "succeeded" if custom else "none",
        "acm_status": acm[0],
        "acm_status_reason": acm[1],
        "sni_endpoint": (
            None if sni_endpoint is None else {"id": sni_endpoint.id, "name": sni_endpoint.name}
        ),
        "app": {"id": app_record.id, "name": app_record.name},
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
    }


def owner_collaborator(record: App, acc: Account) -> JSON:
    """The app's owner, who is its one collaborator on a single-account platform."""
    return {
        "id": str(uuid.uuid5(uuid.UUID(record.id), acc.id)),
        "app": {"id": record.id, "name": record.name},
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "permissions": [],
        "role": "owner",
        "user": {"id": acc.id, "email": acc.email, "federated": False},
    }


def log_session(session_id: str, logplex_url: str, now: datetime) -> JSON:
    return {
        "id": session_id,
        "logplex_url": logplex_url,
        "created_at": timestamp(now),
        "updated_at": timestamp(now),
    }
