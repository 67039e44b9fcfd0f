import asyncio
from datetime import UTC, datetime

import pytest

from dynos.logs.hub import LogHub
from dynos.logs.logline import LogLine

AT = datetime(2026, 11, 27, 3, 50, 0, 123456, tzinfo=UTC)


def test_log_line_uses_herokus_format() -> None:
    line = LogLine(AT, "app", "web.1", "hello")
    assert line.format() == "2026-11-27T03:50:00.123456+00:00 app[web.1]: hello"


def test_recent_returns_the_last_lines_oldest_first() -> None:
    hub = LogHub()
    for n in range(5):
        hub.emit("foo", "app", "web.1", f"line {n}")
    assert [line.message for line in hub.recent("foo", 2)] == ["line 3", "line 4"]


def test_ring_keeps_at_least_1500_lines() -> None:
    hub = LogHub()
    for n in range(2000):
        hub.emit("foo", "app", "web.1", f"line {n}")
    assert len(hub.recent("foo", 1500)) == 1500


def test_recent_filters_by_dyno_type_and_source() -> None:
    hub = LogHub()
    hub.emit("foo", "app", "web.1", "a")
    hub.emit("foo", "app", "worker.1", "b")
    hub.emit("foo", "dynos", "web.2", "c")
    assert [x.message for x in hub.recent("foo", 10, dyno="web")] == ["a", "c"]
    assert [x.message for x in hub.recent("foo", 10, dyno="web.2")] == ["c"]
    assert [x.message for x in hub.recent("foo", 10, source="app")] == ["a", "b"]


@pytest.mark.anyio
async def test_follow_receives_lines_emitted_after_subscribing() -> None:
    hub = LogHub()
    hub.emit("foo", "app", "web.1", "before")
    subscription = hub.follow("foo", source="app")
    hub.emit("foo", "dynos", "web.1", "filtered out")
    hub.emit("foo", "app", "web.1", "after")
    hub.emit("bar", "app", "web.1", "other app")
    first = await asyncio.wait_for(anext(subscription), 5)
    subscription.close()
    assert [first.message] == ["after"]


def test_sinks_get_each_line_of_their_app_until_removed() -> None:
    hub = LogHub()
    got: list[str] = []

    def sink(line: LogLine) -> None:
        got.append(line.message)

    hub.add_sink("foo", sink)
    hub.emit("foo", "app", "web.1", "one")
    hub.emit("bar", "app", "web.1", "other app")
    hub.remove_sink("foo", sink)
    hub.emit("foo", "app", "web.1", "after")
    hub.remove_sink("foo", sink)  # twice: nothing to do
    assert got == ["one"]
