"""The manager's samples of each dyno's memory and load (manager/usage.py), on the fake
backend and clock: handed to the metrics every interval, and written as Heroku's
log-runtime-metrics lines for an app with the feature."""

from __future__ import annotations

import dataclasses

import pytest

from dynos.core.metrics import UsageSample
from dynos.manager.watch import DynoWatch
from tests.manager.test_manager import World

pytestmark = pytest.mark.anyio
MB = 1024 * 1024


async def test_samples_every_interval_with_load_from_cpu_seconds(w: World) -> None:
    taken: list[list[UsageSample]] = []
    settings = dataclasses.replace(
        w.manager.settings, runtime_metrics_every=20.0, on_usage=taken.append
    )
    w.manager._settings = settings  # as server.py would have made it
    await w.scale(web=0, worker=1)
    await w.settle()
    watch = DynoWatch(w.manager, w.routes, w.clock)
    w.fake.memory["worker.1"] = 100 * MB
    w.fake.cpu["worker.1"] = 1.0
    watch.check()  # the first sample: no load known yet
    w.clock.advance(10)
    watch.check()  # 10 s later: not yet
    assert len(taken) == 1
    w.fake.cpu["worker.1"] = 11.0  # 10 CPU seconds in 20 s
    w.clock.advance(10)
    watch.check()
    assert [(s.app, s.type, s.rss_mb, s.load, s.quota_mb) for b in taken for s in b] == [
        ("foo", "worker", 100.0, 0.0, 512),
        ("foo", "worker", 100.0, 0.5, 512),
    ]
    # Without the feature, nothing in the log.
    assert not [x for x in w.logs.recent("foo", 100) if "sample#" in x.message]


async def test_log_runtime_metrics_writes_two_lines_per_dyno(w: World) -> None:
    await w.write(lambda db: db.set_app_feature(w.app.id, "log-runtime-metrics", True))
    await w.scale(web=0, worker=2)
    await w.settle()
    watch = DynoWatch(w.manager, w.routes, w.clock)
    w.fake.memory["worker.1"] = 21 * MB
    watch.check()
    lines = [x.message for x in w.logs.recent("foo", 100, dyno="worker.1")]
    record = w.manager.find_dyno(w.app.id, "worker.1")
    head = f"source=worker.1 dyno=heroku.{w.app.id}.{record.id}"
    assert (
        f"{head} sample#load_avg_1m=0.00 sample#load_avg_5m=0.00 sample#load_avg_15m=0.00" in lines
    )
    assert (
        f"{head} sample#memory_total=21.00MB sample#memory_rss=21.00MB sample#memory_cache=0.00MB"
        " sample#memory_swap=0.00MB sample#memory_pgpgin=0pages sample#memory_pgpgout=0pages"
        " sample#memory_quota=512.00MB"
    ) in lines
    assert any("sample#memory_rss" in x.message for x in w.logs.recent("foo", 100, dyno="worker.2"))
