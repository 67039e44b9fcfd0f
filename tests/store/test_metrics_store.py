"""The metrics' tables on a real SQLite file: minutes added up, rolled up into ten minutes
once those are over, pruned as they age, kept across reopening, gone with their app."""

from __future__ import annotations

from pathlib import Path

from dynos.core.metric_events import MetricEvent
from dynos.core.metrics import MINUTE, TEN_MINUTES, Period
from dynos.store.database import Database

T0 = 1_800_000_000  # a ten-minute boundary


def minute(requests: int, service_bucket: int = 20) -> Period:
    return Period(requests={"2xx": requests}, service={service_bucket: requests})


def test_minutes_add_up_roll_up_and_survive_reopening(tmp_path: Path) -> None:
    db = Database(tmp_path / "dynos.db")
    app = db.create_app("shop")
    db.in_transaction(lambda d: d.add_periods([(app.id, "web", T0, minute(3))]))
    # The same minute again (a server that stopped and started within it): added up.
    db.in_transaction(lambda d: d.add_periods([(app.id, "web", T0, minute(2))]))
    db.in_transaction(lambda d: d.add_periods([(app.id, "web", T0 + 540, minute(4, 30))]))
    assert db.in_transaction(lambda d: d.roll_up(T0 + 599)) == 0  # its ten minutes go on
    db.in_transaction(lambda d: d.add_events([(app.id, MetricEvent(T0 + 5, "deploy", "x"))]))
    db.close()

    db = Database(tmp_path / "dynos.db")
    assert db.periods(app.id, "web", MINUTE, T0, T0 + 600)[T0].requests == {"2xx": 5}
    assert db.in_transaction(lambda d: d.roll_up(T0 + 600)) == 1
    assert db.in_transaction(lambda d: d.roll_up(T0 + 601)) == 0  # made once
    [(at, ten)] = db.periods(app.id, "web", TEN_MINUTES, 0, T0 + 10_000).items()
    assert at == T0 and ten.requests == {"2xx": 9} and ten.service == {20: 5, 30: 4}
    assert [e.kind for e in db.metric_events(app.id, T0)] == ["deploy"]
    # A day later the minutes are gone, the ten minutes kept; a week later those too.
    db.in_transaction(lambda d: d.roll_up(T0 + 24 * 3600 + 600))
    assert db.periods(app.id, "web", MINUTE, 0, T0 + 10_000) == {}
    assert list(db.periods(app.id, "web", TEN_MINUTES, 0, T0 + 10_000)) == [T0]
    db.in_transaction(lambda d: d.roll_up(T0 + 7 * 24 * 3600 + 600))
    assert db.periods(app.id, "web", TEN_MINUTES, 0, T0 + 10_000) == {}
    assert db.metric_events(app.id, 0) == []
    db.close()


def test_an_apps_metrics_go_with_it(tmp_path: Path) -> None:
    db = Database(tmp_path / "dynos.db")
    app = db.create_app("gone")
    db.in_transaction(lambda d: d.add_periods([(app.id, "web", T0, minute(1))]))
    db.in_transaction(lambda d: d.add_events([(app.id, MetricEvent(T0, "scale", "x"))]))
    db.delete_app(app.id)
    assert db.periods(app.id, "web", MINUTE, 0, T0 + 60) == {}
    assert db.metric_events(app.id, 0) == []
    db.close()
