"""``certs``, ``certs:add``, ``certs:info``, ``certs:remove`` (an app's own TLS
certificates, the API's sni-endpoints) and ``certs:ca`` (the platform CA clients trust)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import action, app_label, echo_lines, header, styled_object, table
from dynos.errors import UserError


def format_certs(app: str, endpoints: Sequence[Mapping[str, Any]]) -> list[str]:
    """Heroku's ``certs`` table: name, common names, expiry, trusted, type."""
    if not endpoints:
        return [f"{app_label(app)} has no SSL certificates."]
    rows = []
    for endpoint in endpoints:
        cert = endpoint.get("ssl_cert") or {}
        rows.append(
            [
                str(endpoint.get("name", "")),
                ", ".join(cert.get("cert_domains") or []),
                str(cert.get("expires_at", "")),
                "True" if cert.get("ca_signed?") else "False",
                "ACM" if cert.get("acm") else "SNI",
                str(len(endpoint.get("domains") or [])),
            ]
        )
    return table(rows, ["Name", "Common Name(s)", "Expires", "Trusted", "Type", "Domains"])


def format_cert_info(
    endpoint: Mapping[str, Any], hostnames: Sequence[str] | None = None
) -> list[str]:
    """``hostnames``: the domains it serves, by name (``certs:info``)."""
    cert = endpoint.get("ssl_cert") or {}
    pairs: dict[str, object] = {
        "Common Name(s)": ", ".join(cert.get("cert_domains") or []),
        "Expires At": cert.get("expires_at", ""),
        "Issuer": cert.get("issuer", ""),
        "Starts At": cert.get("starts_at", ""),
        "Subject": cert.get("subject", ""),
    }
    if hostnames is not None:
        pairs["Domain(s)"] = ", ".join(hostnames) or "none (the platform's certificate serves)"
    lines = [header(f"Certificate info for {endpoint.get('name', '')}"), *styled_object(pairs)]
    if cert.get("self_signed?"):
        lines.append("SSL certificate is self signed.")
    elif cert.get("ca_signed?"):
        lines.append("SSL certificate is verified by a root authority.")
    else:
        lines.append("SSL certificate is not trusted.")
    return lines


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read the {what} {path}: {exc}.") from exc


@click.command()
@app_option
def certs_list(app: str | None) -> None:
    """List an app's own SSL certificates."""
    name = require_app(app)
    with connect() as api:
        endpoints = api.get(app_path(name, "sni-endpoints"))
    echo_lines(format_certs(name, endpoints or []))


@click.command()
@click.argument("cert", metavar="CERT")
@click.argument("key", metavar="KEY")
@app_option
def certs_add(cert: str, key: str, app: str | None) -> None:
    """Serve the certificate chain CERT (PEM: the certificate, then its intermediates) with
    its private key KEY for the app's host and custom domains."""
    name = require_app(app)
    body = {"certificate_chain": _read(cert, "certificate"), "private_key": _read(key, "key")}
    with connect() as api, action(f"Adding SSL certificate to {app_label(name)}"):
        endpoint = api.post(app_path(name, "sni-endpoints"), body)
    echo_lines(format_cert_info(endpoint))


@click.command()
@click.option("--name", "endpoint", help="The certificate's name (see `dynos certs`).")
@app_option
def certs_info(endpoint: str | None, app: str | None) -> None:
    """Show an app's SSL certificate (the only one, or --name)."""
    name = require_app(app)
    with connect() as api:
        chosen = _one(api.get(app_path(name, "sni-endpoints")) or [], name, endpoint)
        served = set(chosen.get("domains") or [])
        domains = api.get(app_path(name, "domains")) or []
    hostnames = [str(d.get("hostname")) for d in domains if d.get("id") in served]
    echo_lines(format_cert_info(chosen, hostnames))


@click.command()
@click.option("--name", "endpoint", help="The certificate's name (see `dynos certs`).")
@click.option("--confirm", metavar="APP", help="The app's name again, to confirm.")
@app_option
def certs_remove(endpoint: str | None, confirm: str | None, app: str | None) -> None:
    """Stop serving an app's SSL certificate and forget it (the platform's own certificate
    serves the app's host again)."""
    name = require_app(app)
    if confirm != name:
        raise UserError(f"This removes an SSL certificate of {name}: pass --confirm {name}.")
    with connect() as api:
        chosen = _one(api.get(app_path(name, "sni-endpoints")) or [], name, endpoint)
        with action(f"Removing SSL certificate {chosen['name']} from {app_label(name)}"):
            api.delete(app_path(name, "sni-endpoints", str(chosen["id"])))


def _one(endpoints: list[dict[str, Any]], app: str, wanted: str | None) -> dict[str, Any]:
    if wanted is not None:
        for endpoint in endpoints:
            if wanted in (endpoint.get("name"), endpoint.get("id")):
                return endpoint
        raise UserError(f"{app} has no SSL certificate called {wanted}: see `dynos certs`.")
    if not endpoints:
        raise UserError(f"{app} has no SSL certificates: add one with `dynos certs:add`.")
    if len(endpoints) > 1:
        raise UserError(f"{app} has more than one SSL certificate: pick one with --name.")
    return endpoints[0]


@click.command()
@click.option("--pem", is_flag=True, help="Print the CA certificate itself, not its path.")
def certs_ca(pem: bool) -> None:
    """Print the path of the platform CA certificate, which TLS clients trust to reach the
    router's HTTPS port (curl --cacert, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)."""
    with connect() as api:
        ca = api.get("/tls/ca")
    click.echo(ca["certificate"].rstrip("\n") if pem else ca["path"])


COMMANDS: dict[str, click.Command] = {
    "certs": certs_list,
    "certs:add": certs_add,
    "certs:info": certs_info,
    "certs:remove": certs_remove,
    "certs:ca": certs_ca,
}
