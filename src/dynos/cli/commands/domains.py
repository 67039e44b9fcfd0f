"""``domains``, ``domains:add``, ``domains:update``, ``domains:remove``, ``domains:info``,
``domains:clear``: the hostnames the router sends to an app, and the certificate of each.

Every app answers at ``APP.<domain>``; a custom domain (``www.example.com``) routes to it too,
from the moment ``domains:add`` returns. Its DNS record should point at the DNS target, the
app's own hostname (or the router's address): a request reaches the app by its ``Host``.
Output follows the Heroku CLI's (``=== app Heroku Domain``, ``=== app Custom Domains``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object, table

DomainJson = Mapping[str, Any]


def format_domains(app: str, domains: Sequence[DomainJson]) -> list[str]:
    """The app's own hostname, then a table of its custom domains (if it has any)."""
    own = [str(d.get("hostname")) for d in domains if d.get("kind") == "heroku"]
    custom = [d for d in domains if d.get("kind") == "custom"]
    lines = [header(f"{app} Heroku Domain"), *own]
    if custom:
        rows = [
            [str(d.get("hostname")), str(d.get("cname") or ""), _endpoint_name(d)] for d in custom
        ]
        heads = ["Domain Name", "DNS Target", "SNI Endpoint"]
        lines += ["", header(f"{app} Custom Domains"), *table(rows, heads)]
    return lines


def _endpoint_name(domain: DomainJson) -> str:
    """The app's certificate that serves the domain (empty: the platform's)."""
    return str((domain.get("sni_endpoint") or {}).get("name") or "")


def format_domain(domain: DomainJson) -> list[str]:
    """``domains:info``: every field, the app by its name."""
    shown = {key: value for key, value in domain.items() if key != "app"}
    shown["app"] = (domain.get("app") or {}).get("name")
    shown.pop("sni_endpoint", None)
    if _endpoint_name(domain):
        shown["sni_endpoint"] = _endpoint_name(domain)
    return styled_object(dict(sorted(shown.items())))


def added_lines(domain: DomainJson) -> list[str]:
    target = domain.get("cname") or ""
    return [
        f"Configure your DNS provider to point {domain.get('hostname')} to the DNS Target "
        f"{target} (a CNAME), or to the router's address.",
    ]


@click.command()
@app_option
@click.option("--json", "as_json", is_flag=True, help="Print the domains as JSON.")
def domains_list(app: str | None, as_json: bool) -> None:
    """List the app's hostnames: its own, and its custom domains."""
    name = require_app(app)
    with connect() as api:
        domains = api.get(app_path(name, "domains")) or []
    if as_json:
        click.echo(json.dumps(domains, indent=2))
        return
    echo_lines(format_domains(name, domains))


@click.command()
@app_option
@click.option("--cert", help="The app's SSL certificate to serve it with (see `dynos certs`).")
@click.argument("hostname")
def domains_add(app: str | None, cert: str | None, hostname: str) -> None:
    """Route HOSTNAME (e.g. www.example.com) to the app."""
    name = require_app(app)
    body = {"hostname": hostname, "sni_endpoint": cert}
    with connect() as api, action(f"Adding {hostname} to {app_label(name)}"):
        domain = api.post(app_path(name, "domains"), body)
    echo_lines(added_lines(domain or {}))


@click.command()
@app_option
@click.option(
    "--cert",
    required=True,
    help="The app's SSL certificate to serve it with (a name from `dynos certs`), or 'auto' "
    "for the one dynos picks.",
)
@click.argument("hostname")
def domains_update(app: str | None, cert: str, hostname: str) -> None:
    """Serve HOSTNAME with another of the app's SSL certificates."""
    name = require_app(app)
    body = {"sni_endpoint": None if cert == "auto" else cert}
    with connect() as api, action(f"Updating {hostname} to use {cert} certificate"):
        api.patch(app_path(name, "domains", hostname), body)


@click.command()
@app_option
@click.argument("hostname")
def domains_remove(app: str | None, hostname: str) -> None:
    """Stop routing HOSTNAME to the app."""
    name = require_app(app)
    with connect() as api, action(f"Removing {hostname} from {app_label(name)}"):
        api.delete(app_path(name, "domains", hostname))


@click.command()
@app_option
@click.argument("hostname")
def domains_info(app: str | None, hostname: str) -> None:
    """Show one of the app's domains."""
    name = require_app(app)
    with connect() as api:
        echo_lines(format_domain(api.get(app_path(name, "domains", hostname)) or {}))


@click.command()
@app_option
def domains_clear(app: str | None) -> None:
    """Remove every custom domain of the app."""
    name = require_app(app)
    with connect() as api, action(f"Removing all domains from {app_label(name)}"):
        for domain in api.get(app_path(name, "domains")) or []:
            if domain.get("kind") == "custom":
                api.delete(app_path(name, "domains", str(domain.get("id"))))


COMMANDS: dict[str, click.Command] = {
    "domains": domains_list,
    "domains:add": domains_add,
    "domains:update": domains_update,
    "domains:remove": domains_remove,
    "domains:info": domains_info,
    "domains:clear": domains_clear,
}
