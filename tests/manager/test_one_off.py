"""One-off dynos in the manager, with a fake backend and a fake clock: no processes."""

from __future__ import annotations

import random

import pytest

from dynos.errors import Conflict, Unauthorized, UserError
from dynos.manager.one_off import (
    ATTACH_TIMEOUT,
    RUN_NUMBERS,
    expand_command,
    pick_run_number,
    window_size,
)
from dynos.store.database import Database
from dynos.store.models import App
from tests.manager.test_manager import World

pytestmark = pytest.mark.anyio  # each test gets ``w``, a World (tests/manager/conftest.py)


async def test_one_off_dyno_runs_the_current_release_with_its_env_and_ends_complete(
    w: World,
) -> None:
    record = await w.manager.run_one_off(w.app.id, "echo hi", env={"EXTRA": "1"})
    assert record.name.startswith("run.") and len(record.name) == 8
    spec = w.fake.started[-1]
    assert spec.name == record.name and spec.port is None and spec.terminal is None
    assert spec.env["K"] == "v" and spec.env["EXTRA"] == "1"
    assert spec.env["DYNO"] == record.name
    assert w.states() == {record.name: "up"}
    w.fake.crash(record.name, 0)
    assert w.states() == {}
    said = [line.message for line in w.logs.recent("foo", 10, dyno=record.name)]
    assert said[-2:] == ["Process exited with status 0", "State changed from up to complete"]


async def test_one_off_dyno_that_fails_is_not_restarted(w: World) -> None:
    record = await w.manager.run_one_off(w.app.id, "false")
    w.fake.crash(record.name, 1)
    w.clock.advance(600)
    await w.settle()
    assert w.states() == {}
    assert [s.name for s in w.fake.started] == [record.name]


async def test_scaling_and_releases_leave_one_off_dynos_alone(w: World) -> None:
    record = await w.manager.run_one_off(w.app.id, "sleep 100")
    await w.scale(web=0, worker=1)
    await w.write(
        lambda db: db.create_release(
            w.app.id, "New", slug_id="slug", processes={"worker": "python3 w.py"}, config={}
        )
    )
    await w.settle()
    w.manager.request_restart(w.app.id)  # every dyno: not the one-offs
    await w.settle()
    assert w.states()[record.name] == "up"
    assert record.name not in w.fake.stopped


async def test_stopping_a_one_off_dyno_ends_it_for_good(w: World) -> None:
    record = await w.manager.run_one_off(w.app.id, "sleep 100")
    w.manager.request_restart(w.app.id, record.name)  # what ps:stop run.NNNN sends
    await w.settle()
    assert w.fake.stopped == [record.name]
    assert w.states() == {}


async def test_destroying_the_app_stops_its_one_off_dynos(w: World) -> None:
    record = await w.manager.run_one_off(w.app.id, "sleep 100")
    await w.write(lambda db: db.delete_app(w.app.id))
    await w.settle()
    assert w.fake.stopped == [record.name]


async def test_run_without_a_deployed_release_is_refused_and_creates_nothing(w: World) -> None:
    def create_bare(db: Database) -> App:
        bare = db.create_app("bare")
        db.create_release(bare.id, "Initial release", slug_id=None, processes={}, config={})
        return bare

    bare = await w.store.transaction(create_bare)
    with pytest.raises(UserError, match="deploy it first"):
        await w.manager.run_one_off(bare.id, "bash")
    assert w.manager.dynos(bare.id) == [] and w.fake.started == []


async def test_attached_one_off_starts_only_for_its_client_with_the_right_token(
    w: World,
) -> None:
    record = await w.manager.run_one_off(w.app.id, "bash", attach=True)
    assert record.attachment is not None and w.fake.started == []
    with pytest.raises(Unauthorized):
        await w.manager.attach(w.app.id, record.name, "wrong")
    terminal = await w.manager.attach(w.app.id, record.name, record.attachment.token)
    assert terminal.tty and w.fake.started[-1].terminal is terminal
    with pytest.raises(Conflict):
        await w.manager.attach(w.app.id, record.name, record.attachment.token)
    w.fake.crash(record.name, 7)
    assert await terminal.exit_status() == 7


async def test_attached_one_off_whose_client_never_comes_is_given_up_with_r13(w: World) -> None:
    record = await w.manager.run_one_off(w.app.id, "bash", attach=True)
    w.clock.advance(ATTACH_TIMEOUT - 1)
    await w.settle()
    assert w.states() == {record.name: "starting"}
    w.clock.advance(1)
    await w.settle()
    assert w.states() == {} and w.fake.started == []
    said = [line.message for line in w.logs.recent("foo", 10, dyno=record.name)]
    assert "Error R13 (Attach error) -> Failed to attach to process" in said


def test_an_unattached_one_off_is_given_up_well_within_30_seconds() -> None:
    # The manager sleeps until the earliest client deadline (OneOffRunner.attach_deadline),
    # so the dyno goes at ATTACH_TIMEOUT, not a tick later: tests/heroku measures it.
    assert ATTACH_TIMEOUT <= 25


async def test_a_client_that_leaves_after_its_dyno_exited_hangs_up_nothing(w: World) -> None:
    record = await w.manager.run_one_off(w.app.id, "true", attach=True)
    assert record.attachment is not None
    terminal = await w.manager.attach(w.app.id, record.name, record.attachment.token)
    w.fake.crash(record.name, 0)
    assert await terminal.exit_status() == 0
    w.manager.hang_up(record)
    said = [line.message for line in w.logs.recent("foo", 10, dyno=record.name)]
    assert not any("SIGHUP" in line for line in said), said


def test_a_procfile_type_as_the_command_stands_for_its_command() -> None:
    processes = {"worker": "python3 worker.py"}
    assert expand_command("worker --once", processes) == "python3 worker.py --once"
    assert expand_command("worker", processes) == "python3 worker.py"
    assert expand_command("bash -c 'ls'", processes) == "bash -c 'ls'"


def test_run_numbers_are_four_digits_and_never_taken_twice() -> None:
    taken = set(RUN_NUMBERS) - {4821}
    assert pick_run_number(taken, random.Random(1)) == 4821
    with pytest.raises(Conflict):
        pick_run_number(set(RUN_NUMBERS))


def test_window_size_comes_from_columns_and_lines_or_defaults() -> None:
    assert window_size({"COLUMNS": "132", "LINES": "43"}) == (132, 43)
    assert window_size({"COLUMNS": "wide"}) == (80, 24)
    assert window_size({"COLUMNS": "\u00b2", "LINES": "9" * 5000}) == (80, 24)  # no int() error
