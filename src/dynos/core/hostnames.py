"""Custom domains: which hostnames a user may route to an app, and their one spelling.

Every app answers at ``APP.<domain>`` (the platform's own domain, ``localhost`` by default);
a custom domain adds another hostname the router sends to the same app. A hostname is kept
lowercase and without a trailing dot, because that is how the router compares a request's
``Host`` (DNS names are case-insensitive, and ``example.com.`` is ``example.com``).

What is refused, and why:

- anything but an RFC 1123 host name: dot-separated labels of 1 to 63 letters, digits and
  hyphens, not starting or ending with a hyphen, 253 characters in all;
- a single label (``intranet``): a custom domain is a name in somebody's DNS, and a bare
  label would be searched in local domains the router knows nothing of;
- an IPv4 address (its last label is all digits): the router routes by name, and an address
  would catch every request sent to the machine by address;
- wildcards (``*.example.com``): not supported; each hostname is added by itself;
- the platform's own domain and every name under it: those are the apps' own hostnames
  (``APP.<domain>``) and ``git.<domain>``; a custom domain there would take another app's
  name, or a future one's.
"""

from __future__ import annotations

import re
from enum import StrEnum

from dynos.errors import UserError

MAX_HOSTNAME = 253
# Fullmatch: a "$" would let a trailing newline through.
LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Each hostname is one more entry in the router's table (and, for TLS, one more certificate
# name): a cap keeps a runaway script from filling it. Heroku's own limit is 1000 per app.
MAX_DOMAINS_PER_APP = 1000
SHOWN = 80  # characters of a refused input quoted back in the error


class DomainKind(StrEnum):
    """The Platform API's ``kind`` of an app's domain."""

    HEROKU = "heroku"  # the app's own hostname, APP.<domain>: comes and goes with the app
    CUSTOM = "custom"  # added by the user with domains:add


def lookup_key(text: str) -> str:
    """How a hostname given to find a domain (``domains:info WWW.Example.com``) is compared:
    the stored spelling. Never raises: a name that was never valid simply finds nothing."""
    return text.strip().lower().removesuffix(".")


def parse_hostname(text: object, platform_domain: str) -> str:
    """The stored spelling of the custom domain ``text``, or UserError saying what is wrong
    with it. ``platform_domain`` is the server's own domain (``localhost``)."""
    if not isinstance(text, str) or not text:
        raise UserError("A domain needs a hostname, such as www.example.com.")
    shown = text if len(text) <= SHOWN else text[:SHOWN] + "..."
    name = text.lower().removesuffix(".")
    if "*" in name:
        raise UserError(
            f"Wildcard domains such as {shown!r} are not supported: add each hostname by "
            "itself, such as www.example.com."
        )
    if any(c in name for c in ":/@?#[] \t\r\n"):
        raise UserError(
            f"Invalid hostname {shown!r}: give the hostname alone, such as www.example.com, "
            "without a scheme, port, path or spaces."
        )
    if len(name) > MAX_HOSTNAME:
        raise UserError(f"Invalid hostname {shown!r}: a hostname has at most 253 characters.")
    labels = name.split(".")
    if not all(LABEL.fullmatch(label) for label in labels):
        raise UserError(
            f"Invalid hostname {shown!r}: each dot-separated part must be 1 to 63 letters, "
            "digits or hyphens, and may not start or end with a hyphen (RFC 1123)."
        )
    domain = platform_domain.lower()
    if name == domain or name.endswith("." + domain):
        raise UserError(
            f"{name} is under the platform's own domain {domain}, whose names are the apps' "
            f"own (every app answers at APP.{domain} already): add a hostname of a domain "
            "you control."
        )
    if len(labels) < 2:
        raise UserError(
            f"Invalid hostname {shown!r}: use a full name with a dot, such as www.example.com."
        )
    if labels[-1].isdigit():
        raise UserError(
            f"{shown!r} is an IP address: the router routes by hostname, so add a name that "
            "points at it, such as www.example.com."
        )
    return name
