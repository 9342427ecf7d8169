"""The worker's probe locks every table a unit writes (#12, Round 32): the tables the units
of a whole example journey really write (every event type, in batches and one at a time, a
shelf and staff, and a late event's re-projection of its client) are all in
``UNIT_WRITTEN_TABLES``. A table written and not listed is a table whose ``SHARE`` lock
elsewhere cancels a unit's statements while the probe answers: a lone event would be
dead-lettered. The listed tables this run never writes are printed, not failed on (some
paths are rare)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.pg_schemas import UNIT_WRITTEN_TABLES
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application import projector
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.projector import Projection
from branchline_followup.bootstrap import open_read_model_pool
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import now_utc
from tests.support.examples import EXAMPLE_JOURNEY, EXAMPLE_SHELF, recorded_steps
from tests.support.written_tables import assert_all_listed, record_writes, resolved, written

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def placed(events: list[RecordedEvent]) -> list[Delivered]:
    """``events`` as the worker receives them, each at its place in its store (its source)."""
    last: dict[str, int] = {}
    delivered = []
    for e in events:
        last[e.source] = last.get(e.source, 0) + 1
        delivered.append(Delivered(e, SourcePosition(e.source, last[e.source])))
    return delivered


async def test_every_table_a_unit_writes_is_in_the_probes_list(
    settings: BranchlineSettings,
    db: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await record_writes(db) > len(UNIT_WRITTEN_TABLES) // 2
    replays: list[str] = []
    reproject = projector.reproject_client

    async def counted(uow: Any, client_id: str, apply: Callable[..., Awaitable[None]]) -> None:
        replays.append(client_id)
        await reproject(uow, client_id, apply)

    monkeypatch.setattr(projector, "reproject_client", counted)
    start = now_utc() - timedelta(days=30)
    shelf = recorded_steps(EXAMPLE_SHELF, "unused", start - timedelta(days=1))
    batched = recorded_steps(EXAMPLE_JOURNEY, "C-BATCHED", start)
    alone = recorded_steps(EXAMPLE_JOURNEY, "C-ALONE", start + timedelta(days=1))
    late = alone.pop(4)  # recorded before the rest of its client's events, delivered after
    delivered = placed(shelf + batched + alone + [late])
    ahead, rest = delivered[: len(shelf) + len(batched)], delivered[len(shelf) + len(batched) :]
    pool = await open_read_model_pool(settings)
    try:
        units = PostgresUnitsOfWork(pool)
        projection = Projection(policy_from_settings(settings), task_creations_topic="fu-events")
        outcomes = [
            await apply_batch(units, ahead[i : i + 25], projection, consumer="written-tables")
            for i in range(0, len(ahead), 25)
        ]
        outcomes += [
            await apply_batch(units, [one], projection, consumer="written-tables") for one in rest
        ]
        assert [o.failed for o in outcomes if o.failed] == []
        assert sum(o.applied for o in outcomes) == len(delivered)
        assert replays == ["C-ALONE"]  # the late event's client projected again
        listed = await resolved(pool, [t for t, _ in UNIT_WRITTEN_TABLES])
    finally:
        await pool.close()
    seen = await written(db)
    label = "followup UNIT_WRITTEN_TABLES"
    report = assert_all_listed(label, listed, seen, "fu_read.fu_applied_events")
    with capsys.disabled():
        print("\n" + report)
