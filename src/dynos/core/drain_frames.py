"""Log lines as drains receive them: RFC 5424 messages, octet-counted (RFC 6587).

Each line becomes Heroku's syslog message and each message a frame, ``LEN SP MESSAGE``, with
the frames of a batch back to back (no newline between them), as Heroku's logplex sends them:

    83 <190>1 2026-12-02T03:50:00.123456+00:00 host app web.1 - Hello from web.1

``HOSTNAME`` is ``host`` in an HTTPS drain's body (its token is in the request's
``Logplex-Drain-Token`` header) and the drain's token in a syslog drain's, where nothing else
carries it. ``APP-NAME`` is the line's source (``app`` or ``dynos``, Heroku's ``heroku``),
``PROCID`` its dyno (``web.1``, ``router``, ``api``), ``MSGID`` ``-``; like Heroku's, the
message has no ``STRUCTURED-DATA`` field, which drain receivers (Vector, Papertrail, Heroku's
own parsers) expect.

The priority follows Heroku's facilities: an app's own lines local7.info (190), the router's
local3.info (158), the platform's other lines syslog.notice (45), and the drain's own
``L10`` notice local5.warning (172).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

HTTP_HOSTNAME = "host"
APP_PRIORITY = 190
ROUTER_PRIORITY = 158
PLATFORM_PRIORITY = 45
LOGPLEX_PRIORITY = 172
# RFC 5424's limits on the header's fields; a longer value is cut (printable ASCII only).
_FIELD_LIMITS = {"hostname": 255, "app_name": 48, "procid": 128}


@dataclass(frozen=True)
class Overflow:
    """Lines a drain dropped: how many, since the first of them; said at ``at``."""

    dropped: int
    since: datetime
    at: datetime

    def message(self) -> str:
        """Heroku's L10 line for it."""
        since = stamp(self.since)
        return f"Error L10 (output buffer overflow): {self.dropped} messages dropped since {since}."


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=4096)  # a few sources, dynos and tokens: cleaned once each
def _field(value: str, limit: int) -> str:
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def priority(source: str, dyno: str) -> int:
    if source == "app":
        return APP_PRIORITY
    return ROUTER_PRIORITY if dyno == "router" else PLATFORM_PRIORITY


def message(pri: int, at: datetime, hostname: str, app_name: str, procid: str, text: str) -> str:
    """One RFC 5424 message in Heroku's form (no structured data, see above)."""
    return (
        f"<{pri}>1 {stamp(at)} {_field(hostname, _FIELD_LIMITS['hostname'])} "
        f"{_field(app_name, _FIELD_LIMITS['app_name'])} "
        f"{_field(procid, _FIELD_LIMITS['procid'])} - {text}"
    )


def frame(text: str) -> bytes:
    """RFC 6587 octet counting: the message's length in bytes, a space, the message."""
    encoded = text.encode("utf-8", "replace")
    return b"%d %s" % (len(encoded), encoded)


def line_frame(at: datetime, source: str, dyno: str, text: str, hostname: str) -> bytes:
    return lines_frames([(at, source, dyno, text)], hostname)


def lines_frames(lines: Iterable[tuple[datetime, str, str, str]], hostname: str) -> bytes:
    """The frames of ``(at, source, dyno, text)`` lines, back to back. The router's lines of
    one loop iteration share one time: each distinct time is formatted once."""
    stamps: dict[datetime, str] = {}
    host = _field(hostname, _FIELD_LIMITS["hostname"])
    frames = []
    for at, source, dyno, text in lines:
        when = stamps.get(at)
        if when is None:
            when = stamps[at] = stamp(at)
        app_name = _field(source, _FIELD_LIMITS["app_name"])
        procid = _field(dyno, _FIELD_LIMITS["procid"])
        encoded = (
            f"<{priority(source, dyno)}>1 {when} {host} {app_name} {procid} - {text}"
        ).encode("utf-8", "replace")
        frames.append(b"%d %s" % (len(encoded), encoded))
    return b"".join(frames)


def overflow_frame(overflow: Overflow, hostname: str, source: str) -> bytes:
    """The L10 line, from ``source[logplex]`` (Heroku's ``heroku[logplex]``)."""
    return frame(
        message(LOGPLEX_PRIORITY, overflow.at, hostname, source, "logplex", overflow.message())
    )


def read_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Split octet-counted frames off ``data``: (the whole frames' messages, the rest, which
    is the start of a frame still to come). ValueError for bytes that are no frame."""
    messages: list[bytes] = []
    at, size = 0, len(data)
    while at < size:
        space = data.find(b" ", at, at + 12)
        head = data[at:space] if space != -1 else data[at : at + 12]
        if not head.isdigit() or head.startswith(b"0"):
            raise ValueError(f"not an octet-counted frame: {data[at : at + 40]!r}")
        if space == -1:
            if size - at >= 12:
                raise ValueError(f"not an octet-counted frame: {data[at : at + 40]!r}")
            break
        end = space + 1 + int(head)
        if size < end:
            break
        messages.append(data[space + 1 : end])
        at = end
    return messages, data[at:]
