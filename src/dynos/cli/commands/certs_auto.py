"""``certs:auto``, ``certs:auto:enable``, ``certs:auto:disable``, ``certs:auto:refresh``:
automatic certificates from the server's ACME directory (Heroku's ACM).

``certs:auto`` prints whether ACM is on, the certificate's names and dates, and each host's
status (``Cert Issued``, ``Pending``, ``Failing`` with the ACME server's reason, ``Failed``),
as the heroku CLI does. ``--wait`` waits until every host has its certificate or failed.
"""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, parse_time, styled_object, table
from dynos.errors import UserError

WAIT_POLL = 1.0  # seconds between looks while waiting for a certificate
# Where --wait stops: issued, or an attempt failed (the reason is worth showing at once;
# the server goes on retrying a failing one).
SETTLED = ("cert issued", "failing", "failed")


def humanize(status: str | None) -> str:
    """Heroku's words for an ``acm_status``: ``cert issued`` -> ``Cert Issued``."""
    if not status:
        return "Waiting"
    return " ".join(word[:1].upper() + word[1:] for word in status.replace("-", " ").split())


def format_status(app: str, status: dict[str, Any]) -> list[str]:
    if not status.get("acm"):
        return [header(f"Automatic Certificate Management is disabled on {app}")]
    lines = [header(f"Automatic Certificate Management is enabled on {app}")]
    cert = status.get("certificate")
    if cert:
        renews = parse_time(cert["renews_at"]).strftime("%Y-%m-%d %H:%M %Z")
        lines += ["", f"Renewal scheduled for {renews}.", "", "Certificate details:"]
        lines += styled_object(
            {
                "Common Name(s)": ", ".join(cert["cert_domains"]),
                "Starts At": _when(cert["starts_at"]),
                "Expires At": _when(cert["expires_at"]),
            }
        )
    domains = status.get("domains") or []
    rows = [
        [
            domain["hostname"],
            humanize(domain["acm_status"]),
            domain.get("acm_status_reason") or "",
            _when(domain["updated_at"]),
        ]
        for domain in domains
    ]
    lines += ["", *table(rows, ["Domain", "Status", "Reason", "Last Updated"])]
    if any(domain["acm_status"] == "failed" for domain in domains):
        lines += [
            "",
            f"Some domains failed validation: retry with 'dynos certs:auto:refresh -a {app}'.",
        ]
    return lines


def _when(text: str) -> str:
    return parse_time(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def wait_until_settled(api: Any, app: str, timeout: float | None = None) -> dict[str, Any]:
    """Poll the app's ACM status until every host has a certificate or an attempt failed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status: dict[str, Any] = api.get(app_path(app, "acm"))
        statuses = [domain["acm_status"] for domain in status.get("domains") or []]
        if not status.get("acm") or all(s in SETTLED for s in statuses):
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(WAIT_POLL)


@click.command()
@app_option
@click.option(
    "--wait", is_flag=True, help="Wait until every host has its certificate, or it failed."
)
def certs_auto(app: str | None, wait: bool) -> None:
    """Show the app's Automatic Certificate Management status."""
    name = require_app(app)
    with connect() as api:
        status = wait_until_settled(api, name) if wait else api.get(app_path(name, "acm"))
    echo_lines(format_status(name, status))


@click.command()
@app_option
@click.option("--wait", is_flag=True, help="Wait until the certificate is issued.")
def certs_auto_enable(app: str | None, wait: bool) -> None:
    """Get a certificate for the app's hosts from the ACME directory, and renew it."""
    name = require_app(app)
    with connect() as api:
        with action(f"Enabling Automatic Certificate Management on {app_label(name)}") as doing:
            api.post(app_path(name, "acm"), {})
            doing.done("starting")
        if not wait:
            click.echo(f"See the status with 'dynos certs:auto -a {name}'.")
            return
        status = wait_until_settled(api, name)
    echo_lines(format_status(name, status))
    if any(d["acm_status"] in ("failing", "failed") for d in status.get("domains") or []):
        raise UserError(f"The certificate could not be issued: see 'dynos certs:auto -a {name}'.")


@click.command()
@app_option
@click.option("--confirm", metavar="NAME", help="The app's name again, to confirm.")
def certs_auto_disable(app: str | None, confirm: str | None) -> None:
    """Stop managing the app's certificate: it is removed, and the platform's serves again."""
    name = require_app(app)
    if confirm != name:
        raise UserError(
            f"This removes the automatic certificate of {app_label(name)}. To proceed, pass "
            f"--confirm {name}."
        )
    with connect() as api, action("Disabling Automatic Certificate Management"):
        api.delete(app_path(name, "acm"))


@click.command()
@app_option
def certs_auto_refresh(app: str | None) -> None:
    """Order a new certificate now (after a failure, or to pick up new hosts at once)."""
    name = require_app(app)
    with connect() as api, action("Refreshing Automatic Certificate Management"):
        api.patch(app_path(name, "acm"), {"acm_refresh": True})


COMMANDS: dict[str, click.Command] = {
    "certs:auto": certs_auto,
    "certs:auto:enable": certs_auto_enable,
    "certs:auto:disable": certs_auto_disable,
    "certs:auto:refresh": certs_auto_refresh,
}
