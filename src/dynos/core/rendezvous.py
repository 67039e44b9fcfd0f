"""Heroku's rendezvous protocol, as the heroku CLI speaks it to a one-off dyno's ``attach_url``
(pure: bytes and strings in, decisions out; the listener is api/rendezvous.py).

The API answers an attached dyno with ``attach_url = rendezvous://HOST:PORT/PATH``. The heroku
CLI (``heroku run``, lib/run/dyno.js) opens a TLS connection to HOST:PORT, verifying the
certificate, and writes PATH (without its leading ``/``) and ``\\r\\n``. What follows is the
dyno's terminal, raw both ways:

- server -> client: first one line of its own, which the CLI drops unread (it drops the whole
  first chunk it receives, so the line goes out alone, before any output); then the dyno's
  output; at the end ``\\uFFFF heroku-command-exit-status: N`` on a line of its own, which the
  CLI removes from the output and exits with (``heroku run -x`` has the dyno's shell print
  the same marker; this one comes from the platform, so the status passes through without
  ``-x`` too, and even when the command ends its shell with ``exit N``);
- client -> server: the user's keystrokes (with a TTY), or stdin then ``\\x04`` when it ends
  (without one: the CLI's way of saying EOF over a stream it never half-closes).

There is no window-size message: the CLI sends ``COLUMNS`` and ``LINES`` in the dyno's env.

PATH here is ``<app id>/<dyno name>/<secret>``: the secret is the dyno's attach token (192
random bits, one use, compared in constant time by manager/one_off.py), the rest names the dyno
so that no table of secrets is searched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "rendezvous"
GREETING = b"rendezvous\r\n"  # the first line, which the CLI drops
END_OF_INPUT = b"\x04"  # ^D: a client without a TTY says its stdin ended with it
MAX_LINE = 256  # bytes of the attach line before its CRLF; longer is refused
SECRET_TIMEOUT = 10.0  # seconds a connection has to send its attach line

_APP_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_DYNO = r"[a-z][a-z0-9_-]{0,29}\.[0-9]{1,6}"
_TOKEN = r"[A-Za-z0-9_-]{16,128}"
_LINE = re.compile(rf"(?P<app>{_APP_ID})/(?P<dyno>{_DYNO})/(?P<token>{_TOKEN})")


class BadAttachLine(ValueError):
    """The first line of a rendezvous connection is not an attach line: the connection is
    closed (the message says why, for the client)."""


@dataclass(frozen=True)
class AttachLine:
    """What a client asked to attach to: a dyno of an app, and the secret it showed."""

    app_id: str
    dyno: str
    token: str


def attach_path(app_id: str, dyno: str, token: str) -> str:
    return f"{app_id}/{dyno}/{token}"


def attach_url(host: str, port: int, app_id: str, dyno: str, token: str) -> str:
    """``rendezvous://host:port/<app id>/<dyno>/<token>`` (an IPv6 host in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{SCHEME}://{host}:{port}/{attach_path(app_id, dyno, token)}"


def read_attach_line(buffer: bytes) -> tuple[AttachLine | None, bytes]:
    """The attach line at the start of ``buffer`` and the bytes after it (keystrokes typed
    early), or ``(None, buffer)`` while its end has not arrived.

    Raises BadAttachLine for a line too long, not ASCII, or not of the attach form.
    """
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > MAX_LINE + 1:
            raise BadAttachLine("The attach line is too long: use the dyno's attach_url.")
        return None, buffer
    line, rest = buffer[:end].removesuffix(b"\r"), buffer[end + 1 :]
    if len(line) > MAX_LINE:
        raise BadAttachLine("The attach line is too long: use the dyno's attach_url.")
    match = _LINE.fullmatch(line.decode("ascii", errors="replace"))
    if match is None:
        raise BadAttachLine(
            "This is not an attach line: connect with 'heroku run' to the dyno's attach_url."
        )
    return AttachLine(match["app"], match["dyno"], match["token"]), rest


def exit_marker(status: int) -> bytes:
    """The line that tells the CLI the command's exit status (and ends its output). Ends in
    a bare LF: the CLI strips the marker only when the line ends right after its digits."""
    return f"\uffff heroku-command-exit-status: {status}\n".encode()


def split_input(data: bytes, tty: bool) -> tuple[bytes, bool]:
    """What of a client's ``data`` goes to the dyno, and whether its input ended there.

    With a TTY every byte goes (^D is the terminal's to read); without one, ``\\x04`` is the
    end of stdin: what comes before it goes, then the pipe closes, and anything after it
    is dropped.
    """
    if tty:
        return data, False
    before, eot, _ = data.partition(END_OF_INPUT)
    return before, bool(eot)


def refusal(message: str) -> bytes:
    """What a refused client is told, after the greeting: one line, then exit status 1."""
    return f"\r\n !    {message}\r\n".encode()
