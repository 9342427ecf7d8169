"""Followup takes the streams of its own event store in the shared store's one order (#12;
docs/intake.md, "Lock order"): ``COLLATE "C"``, the byte order Python sorts in, in each
statement that takes several, whatever collation the database was created with (en_US or ICU
order ``a-b`` and ``ab``, or ``refusals-x`` and ``refusals/x``, otherwise)."""

from __future__ import annotations

import asyncpg
import pytest

from branchline_followup.adapters.collected_writes import CollectedStatement, add_appended
from branchline_followup.adapters.pg_schemas import LIVE_SCHEMA, with_search_path
from branchline_followup.adapters.unit_of_work import _APPEND_NUMBERED, _CREATE_AND_LOCK_STREAMS
from branchline_followup.bootstrap import prepare_database
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_streams_are_taken_in_the_byte_order_of_the_shared_store(
    settings: BranchlineSettings,
) -> None:
    await prepare_database(settings)
    collected = CollectedStatement()
    add_appended(collected, [], "followup")
    assert collected.sql is not None
    statements = {
        "lock": (_CREATE_AND_LOCK_STREAMS, [["a-b", "ab"]]),
        "append": (_APPEND_NUMBERED, ["[]"]),
        "collected append": (collected.sql, collected.args),
    }
    conn = await asyncpg.connect(with_search_path(settings.followup_database_url, LIVE_SCHEMA))
    try:
        for name, (sql, args) in statements.items():
            lines = [r[0] for r in await conn.fetch("EXPLAIN (VERBOSE) " + sql, *args)]
            assert stream_rows_sort_key(lines) == 'Sort Key: stream_id COLLATE "C"', (name, lines)
    finally:
        await conn.close()


def stream_rows_sort_key(lines: list[str]) -> str | None:
    """The sort key of the rows the plan inserts into ``es_streams`` (the sort under it),
    without its table alias."""
    insert = next(i for i, line in enumerate(lines) if "Insert on public.es_streams" in line)
    for line in lines[insert + 1 :]:
        if "Sort Key:" in line:
            key = line.strip()
            alias = key.partition(": ")[2].partition(".")[0]
            return key.replace(f"{alias}.", "", 1)
    return None
