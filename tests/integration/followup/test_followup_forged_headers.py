"""A message whose position header no relay of ours wrote: the position a relay puts in the
headers reaches the read models' ``bigint`` columns and the consumers' checks of the log, so
one no store can hold (or text ``int()`` would stretch to a number) is no position at all,
as for a message published before positions were recorded: the event is applied, nothing
fails, and no forged number is recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.entrypoints.worker import handle_batch
from branchline_shared.kafka.consuming import RawMessage
from tests.integration.followup.harness import relayed
from tests.integration.followup.test_followup_batches import (
    PROJECTION,
    DeadLetterBox,
    registered,
    units,  # noqa: F401 - the fixture
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def forged(headers: list[tuple[str, bytes]], position: bytes) -> list[tuple[str, bytes]]:
    return [(k, position if k == "global_position" else v) for k, v in headers]


@pytest.mark.parametrize(
    "position",
    [b"9223372036854775808", b"99999999999999999999999", b"-1", b"0", b" 7", b"1_000", b"\xff"],
)
async def test_a_forged_position_header_is_no_position(
    units: PostgresUnitsOfWork,  # noqa: F811
    db: asyncpg.Connection[Any],
    position: bytes,
) -> None:
    events = [registered("C-F1"), registered("C-F2"), registered("C-F3")]
    raws = relayed(events)
    raws[1] = RawMessage(
        raws[1].topic, 0, 1, raws[1].key, raws[1].value, forged(list(raws[1].headers), position)
    )
    dead = DeadLetterBox()
    await asyncio.wait_for(handle_batch(raws, units, dead, PROJECTION), 60)  # type: ignore[arg-type]
    assert dead.sent == []
    applied = await db.fetch(
        "SELECT event_id, source, global_position FROM fu_read.fu_applied_events"
        " WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    recorded = {r["event_id"]: (r["source"], r["global_position"]) for r in applied}
    assert recorded == {
        events[0].event_id: ("intake", 1),
        events[1].event_id: ("intake", None),  # the envelope's source, no position
        events[2].event_id: ("intake", 3),
    }
