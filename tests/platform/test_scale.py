"""``platform.dynos.scale``: ``ps:scale`` and ``ps:type`` as use-cases, in process.

Each change writes the formation in one transaction, logs ``Scaled to ...`` and wakes the
manager, which then starts or stops dynos; a wrong change is refused before anything is
written, logged or woken.
"""

from __future__ import annotations

import pytest

from dynos.core.scale import ScaleChange
from dynos.core.sizes import find_size
from dynos.errors import NotFound, UserError
from tests.platform.stage import Stage, by_type

pytestmark = pytest.mark.anyio


def quantity(type_: str, op: str, amount: int) -> ScaleChange:
    return ScaleChange(type_, op, amount, None)


async def test_scaling_writes_the_formation_logs_it_and_wakes_the_manager(stage: Stage) -> None:
    app = await stage.deployed_app()
    assert await stage.formation(app) == {"web": (1, "Standard-1X"), "worker": (0, "Standard-1X")}

    changes = [
        quantity("worker", "=", 2),
        ScaleChange("web", "+", 1, find_size("performance-m")),
    ]
    returned = await stage.platform.dynos.scale(app, changes)

    expected = {"web": (2, "Performance-M"), "worker": (2, "Standard-1X")}
    assert by_type(returned) == expected
    assert await stage.formation(app) == expected
    assert stage.api_lines(app) == [
        "app[api]: Scaled to worker@2:Standard-1X web@2:Performance-M by user alice@example.com"
    ]
    assert stage.wakes == 1
    await stage.settle()  # what the wake asks the manager to do
    assert stage.dynos(app) == {
        "web.1": "starting",
        "web.2": "starting",
        "worker.1": "up",
        "worker.2": "up",
    }
    assert {s.name: s.size.name for s in stage.backend.started} == {
        "web.1": "Performance-M",
        "web.2": "Performance-M",
        "worker.1": "Standard-1X",
        "worker.2": "Standard-1X",
    }


async def test_scaling_down_stops_the_dynos_past_the_new_quantity(stage: Stage) -> None:
    app = await stage.deployed_app()
    await stage.platform.dynos.scale(app, [quantity("worker", "=", 3)])
    await stage.settle()
    stage.forget(app)

    await stage.platform.dynos.scale(app, [quantity("worker", "-", 2)])

    assert await stage.formation(app) == {"web": (1, "Standard-1X"), "worker": (1, "Standard-1X")}
    assert stage.api_lines(app) == [
        "app[api]: Scaled to worker@1:Standard-1X by user alice@example.com"
    ]
    assert stage.wakes == 1
    await stage.settle()
    assert sorted(stage.backend.stopped) == ["worker.2", "worker.3"]
    assert stage.dynos(app) == {"web.1": "starting", "worker.1": "up"}


async def test_a_size_alone_changes_the_size_and_keeps_the_quantity(stage: Stage) -> None:
    app = await stage.deployed_app()

    await stage.platform.dynos.scale(app, [ScaleChange("web", None, 0, find_size("standard-2x"))])

    assert await stage.formation(app) == {"web": (1, "Standard-2X"), "worker": (0, "Standard-1X")}
    assert stage.api_lines(app) == [
        "app[api]: Scaled to web@1:Standard-2X by user alice@example.com"
    ]
    assert stage.wakes == 1


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ([quantity("clock", "=", 1)], NotFound, "No such process type 'clock'"),
        ([quantity("worker", "-", 1)], UserError, "Cannot scale worker to -1"),
        # One wrong change among right ones: none of them is applied.
        (
            [quantity("web", "=", 3), quantity("worker", "=", 2), quantity("clock", "+", 1)],
            NotFound,
            "Process types: web, worker",
        ),
        ([quantity("web", "=", 10_000)], UserError, "web"),
    ],
    ids=["unknown type", "below zero", "one wrong among right ones", "too many"],
)
async def test_a_wrong_change_changes_nothing_logs_nothing_and_wakes_nobody(
    stage: Stage, changes: list[ScaleChange], error: type[Exception], message: str
) -> None:
    app = await stage.deployed_app()
    before = await stage.formation(app)

    with pytest.raises(error, match=message):
        await stage.platform.dynos.scale(app, changes)

    assert await stage.formation(app) == before
    assert stage.api_lines(app) == []
    assert stage.wakes == 0


async def test_an_app_without_a_deploy_has_nothing_to_scale(stage: Stage) -> None:
    app = await stage.platform.create_app("empty")
    stage.forget(app)

    with pytest.raises(NotFound, match="deploy the app first"):
        await stage.platform.dynos.scale(app, [quantity("web", "=", 1)])

    assert await stage.formation(app) == {}
    assert stage.api_lines(app) == []
    assert stage.wakes == 0
