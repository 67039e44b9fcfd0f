"""Log session streams: the backlog, the filters, following, and both framings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from dynos.api.log_sessions import (
    SESSION_TTL,
    LogSession,
    LogSessions,
    check_source,
    sse_frame,
)
from dynos.errors import UserError
from dynos.logs.hub import LogHub
from dynos.logs.logline import LogLine
from dynos.testing.fakes import FakeClock

AT = datetime(2026, 11, 27, 3, 50, tzinfo=UTC)


def hub_with_lines() -> LogHub:
    hub = LogHub()
    hub.emit("foo", "app", "web.1", "hello from web", at=AT)
    hub.emit("foo", "dynos", "web.1", "State changed from starting to up", at=AT)
    hub.emit("foo", "app", "worker.1", "job done", at=AT)
    return hub


def session(
    *, lines: int = 100, tail: bool = False, dyno: str | None = None, source: str | None = None
) -> LogSession:
    return LogSession("foo", lines, tail, dyno, source)


def read_all(sessions: LogSessions, wanted: LogSession, *, events: bool) -> str:
    async def collect() -> str:
        return b"".join([chunk async for chunk in sessions.stream(wanted, events=events)]).decode()

    return asyncio.run(collect())


def test_plain_stream_is_one_heroku_line_per_line() -> None:
    text = read_all(LogSessions(hub_with_lines()), session(lines=1), events=False)
    assert text == "2026-11-27T03:50:00.000000+00:00 app[worker.1]: job done\n"


def test_event_stream_is_one_event_per_line() -> None:
    text = read_all(LogSessions(hub_with_lines()), session(lines=2), events=True)
    assert text == (
        "data: 2026-11-27T03:50:00.000000+00:00 dynos[web.1]: State changed from starting to up\n\n"
        "data: 2026-11-27T03:50:00.000000+00:00 app[worker.1]: job done\n\n"
    )


def test_multiline_message_is_one_event_of_several_data_lines() -> None:
    frame = sse_frame(LogLine(AT, "app", "web.1", "one\ntwo"))
    assert frame == b"data: 2026-11-27T03:50:00.000000+00:00 app[web.1]: one\ndata: two\n\n"


def test_process_type_filter_keeps_that_types_dynos() -> None:
    text = read_all(LogSessions(hub_with_lines()), session(dyno="worker"), events=False)
    assert text.splitlines() == ["2026-11-27T03:50:00.000000+00:00 app[worker.1]: job done"]


def test_heroku_source_means_the_platforms_lines() -> None:
    text = read_all(LogSessions(hub_with_lines()), session(source="heroku"), events=False)
    assert [line.split(" ", 1)[1] for line in text.splitlines()] == [
        "dynos[web.1]: State changed from starting to up"
    ]


def test_tail_follows_new_lines_after_the_backlog() -> None:
    hub = hub_with_lines()
    sessions = LogSessions(hub)

    async def follow() -> list[bytes]:
        stream = sessions.stream(session(lines=1, tail=True), events=True)
        chunks = [await anext(stream)]
        hub.emit("foo", "app", "web.1", "later", at=AT)
        chunks.append(await anext(stream))
        await stream.aclose()
        return chunks

    backlog, later = asyncio.run(follow())
    assert backlog.endswith(b"job done\n\n")
    assert later == b"data: 2026-11-27T03:50:00.000000+00:00 app[web.1]: later\n\n"


def test_session_expires_after_its_ttl() -> None:
    clock = FakeClock()
    sessions = LogSessions(LogHub(), clock=clock)
    created = sessions.create(session())
    assert sessions.get(created.key) is created
    clock.advance(SESSION_TTL + 1)
    assert sessions.get(created.key) is None


def test_session_id_is_not_its_url_key() -> None:
    created = session()
    assert created.id != created.key


def test_reconnecting_keeps_a_session_alive() -> None:
    clock = FakeClock()
    sessions = LogSessions(LogHub(), clock=clock)
    created = sessions.create(session(tail=True))
    for _ in range(3):
        clock.advance(SESSION_TTL - 1)
        assert sessions.get(created.key) is created


def test_a_log_source_no_line_has_is_refused_and_router_points_to_the_dyno_filter() -> None:
    assert [check_source(s) for s in (None, "app", "heroku", "dynos")] == [
        None,
        "app",
        "heroku",
        "dynos",
    ]
    with pytest.raises(UserError, match="Router lines are heroku\\[router\\]: use -d router"):
        check_source("router")
    with pytest.raises(UserError, match="Unknown log source 'web'"):
        check_source("web")
