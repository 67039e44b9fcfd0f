"""The rendezvous protocol's rules (core/rendezvous.py): the attach line, the exit marker, the
end of a pipe's input. Pure: no sockets."""

from __future__ import annotations

import re

import pytest

from dynos.core.rendezvous import (
    GREETING,
    MAX_LINE,
    AttachLine,
    BadAttachLine,
    attach_url,
    exit_marker,
    read_attach_line,
    refusal,
    split_input,
)

APP_ID = "0b9c5d2e-8f41-4a3b-9c1d-2e3f4a5b6c7d"
TOKEN = "Zm9vYmFyYmF6cXV4LW5vdC1hLXJlYWwtdG9rZW4"


def test_the_url_names_the_dyno_and_its_secret_and_the_cli_sends_back_its_path() -> None:
    url = attach_url("127.0.0.1", 5001, APP_ID, "run.1234", TOKEN)
    assert url == f"rendezvous://127.0.0.1:5001/{APP_ID}/run.1234/{TOKEN}"
    # What the heroku CLI writes: the URL's path without its leading slash, then CRLF.
    path = url.split(":5001/", 1)[1]
    line, rest = read_attach_line(path.encode() + b"\r\n")
    assert line == AttachLine(APP_ID, "run.1234", TOKEN) and rest == b""


def test_an_ipv6_host_is_bracketed() -> None:
    assert attach_url("::1", 5001, APP_ID, "run.1", TOKEN).startswith("rendezvous://[::1]:5001/")


def test_the_line_waits_for_its_end_and_keeps_what_follows_it() -> None:
    raw = f"{APP_ID}/run.1234/{TOKEN}".encode()
    assert read_attach_line(raw[:20]) == (None, raw[:20])
    line, rest = read_attach_line(raw + b"\nls\r")  # a bare LF ends it too
    assert line is not None and line.token == TOKEN and rest == b"ls\r"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n",  # an HTTP client on the wrong port
        f"{APP_ID}/run.1234/short\r\n".encode(),  # a token too short to be one
        f"{APP_ID}/run.1234/{TOKEN}/extra\r\n".encode(),
        f"{APP_ID}/../{TOKEN}\r\n".encode(),
        f"{APP_ID}/run.1234/{TOKEN}\x00\r\n".encode(),
        f"{APP_ID}/run.1234/{TOKEN[:-1]}\u00e9\r\n".encode(),  # not ASCII
        b"\r\n",
    ],
)
def test_anything_but_an_attach_line_is_refused(raw: bytes) -> None:
    with pytest.raises(BadAttachLine, match="attach line"):
        read_attach_line(raw)


def test_a_line_too_long_is_refused_before_its_end_arrives() -> None:
    assert read_attach_line(b"a" * MAX_LINE) == (None, b"a" * MAX_LINE)
    with pytest.raises(BadAttachLine, match="too long"):
        read_attach_line(b"a" * (MAX_LINE + 2))
    with pytest.raises(BadAttachLine, match="too long"):
        read_attach_line(b"a" * (MAX_LINE + 1) + b"\n")


def test_the_exit_marker_is_the_line_the_heroku_cli_strips_and_exits_with() -> None:
    # The CLI's own expressions (lib/run/dyno.js): it finds the status with the first and
    # removes the line from the output with the second, which needs the LF right after it.
    text = exit_marker(3).decode()
    found = re.search(r"\uFFFF heroku-command-exit-status: (\d+)", text, re.M)
    assert found is not None and found[1] == "3"
    assert re.sub(r"^\uFFFF heroku-command-exit-status: \d+$\n?", "", text, flags=re.M) == ""


def test_the_greeting_and_a_refusal_are_lines() -> None:
    assert GREETING.endswith(b"\r\n") and b"\n" not in GREETING[:-1]
    assert refusal("Wrong.") == b"\r\n !    Wrong.\r\n"


def test_without_a_tty_end_of_transmission_ends_the_input() -> None:
    assert split_input(b"abc", tty=False) == (b"abc", False)
    assert split_input(b"abc\x04", tty=False) == (b"abc", True)
    assert split_input(b"ab\x04cd", tty=False) == (b"ab", True)  # after it: dropped
    assert split_input(b"\x04", tty=True) == (b"\x04", False)  # the terminal's ^D
