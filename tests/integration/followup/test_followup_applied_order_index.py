"""fu_applied_events_by_seq is a BRIN index (#12, followup migration 026): the self-check's
order step (``reconciling.UNORDERED``, ``applied_seq > $mark`` among the unkept events) reads
it as a bitmap of page ranges, and still finds every event applied after the mark, one that
landed in an early page's freed space included (its insert widens that range's summary)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from branchline_followup.adapters.reconciling import (
    UNJUDGED_TYPES,
    UNORDERED,
    read_models_unordered,
)
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_shared.settings import BranchlineSettings
from tests.support.generic_plans import generic_plan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROWS = 30_000
"""Enough pages for several BRIN ranges (128 pages each) of fu_applied_events."""

EARLY_PAGES = 3
"""The rows of the table's first pages are deleted, so that space is reused."""

UNKEPT = "product.registered"
"""A type the order step judges (not among UNJUDGED_TYPES) and not kept in a journal."""

FILL = f"""
INSERT INTO fu_applied_events (event_id, type, source, global_position)
SELECT gen_random_uuid(), 'client.registered', 'intake', n
FROM generate_series(1, {ROWS}) AS n;
INSERT INTO fu_client_events (event_id, client_id, source, global_position, recorded_ms, envelope)
SELECT event_id, 'C-' || global_position, 'intake', global_position, 0, '{{}}'::jsonb
FROM fu_applied_events;
ANALYZE fu_applied_events;
ANALYZE fu_client_events;
"""

SUMMARISED = """
SELECT brin_summarize_new_values(i.oid) FROM pg_class i JOIN pg_am am ON am.oid = i.relam
WHERE i.oid = 'fu_read.fu_applied_events_by_seq'::regclass AND am.amname = 'brin'
"""
"""Every full range summarised (a B-tree has nothing to summarise: the step is skipped)."""


@pytest.fixture
async def pool(settings: BranchlineSettings) -> AsyncIterator[Any]:
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


async def test_the_apply_order_index_is_brin_and_the_only_other_btrees_are_key_and_source(
    pool: Any,
) -> None:
    rows = await pool.fetch(
        "SELECT i.relname AS name, am.amname AS method FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
        "WHERE x.indrelid = 'fu_read.fu_applied_events'::regclass"
    )
    methods = {r["name"]: r["method"] for r in rows}
    assert methods["fu_applied_events_by_seq"] == "brin"
    assert {n for n, m in methods.items() if m == "btree"} == {
        "fu_applied_events_pkey",
        "fu_applied_events_source",
    }
    assert UNKEPT not in UNJUDGED_TYPES


async def test_the_order_step_reads_the_range_and_finds_a_row_in_an_early_page(
    pool: Any,
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(FILL)
        await conn.execute(SUMMARISED)
        pages = await conn.fetchval(
            "SELECT pg_relation_size('fu_read.fu_applied_events') "
            "/ current_setting('block_size')::int"
        )
        assert pages > 2 * 128, pages  # several ranges, the first summarised
        await conn.execute(
            "DELETE FROM fu_client_events WHERE event_id IN (SELECT event_id FROM "
            f"fu_applied_events WHERE (ctid::text::point)[0] < {EARLY_PAGES})"
        )
        await conn.execute(
            f"DELETE FROM fu_applied_events WHERE (ctid::text::point)[0] < {EARLY_PAGES}"
        )
        # INDEX_CLEANUP ON: with dead rows on under 2 % of the pages VACUUM would skip the
        # indexes and leave the freed line pointers dead, their pages out of the free space map.
        await conn.execute("VACUUM (INDEX_CLEANUP ON) fu_read.fu_applied_events")
        mark = await conn.fetchval("SELECT max(applied_seq) FROM fu_applied_events")

    # Rows applied after the mark, one at a time, until one lands in an early page (the free
    # space map hands out the freed pages once the table's last page is full).
    early: int | None = None
    async with pool.acquire() as conn:
        for _ in range(2_000):
            row = await conn.fetchrow(
                "INSERT INTO fu_applied_events (event_id, type, source, global_position) "
                "VALUES (gen_random_uuid(), $1, 'intake', NULL) "
                "RETURNING applied_seq, (ctid::text::point)[0]::int AS page",
                UNKEPT,
            )
            if row["page"] < EARLY_PAGES:
                early = row["applied_seq"]
                break
    assert early is not None, "no row landed in an early page: the setup proves nothing"
    inserted = await pool.fetchval(
        "SELECT count(*) FROM fu_applied_events WHERE applied_seq > $1", mark
    )

    found = await read_models_unordered(pool, mark, inserted + 10)
    seqs = [entry.seq for entry in found]
    assert early in seqs
    assert len(seqs) == inserted
    assert seqs == sorted(seqs)

    await pool.execute("ANALYZE fu_read.fu_applied_events")
    plan = await generic_plan(pool, UNORDERED)  # one window's statement
    assert "Bitmap Index Scan on fu_applied_events_by_seq" in plan, plan


async def test_a_walk_in_windows_finds_every_unkept_event_in_order_a_page_at_a_time(
    pool: Any,
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(FILL)
        await conn.execute(
            "UPDATE fu_applied_events SET type = $1 WHERE global_position % 7 = 0", UNKEPT
        )
        await conn.execute(
            "DELETE FROM fu_client_events j USING fu_applied_events a "
            "WHERE a.event_id = j.event_id AND a.type = $1",
            UNKEPT,
        )
        # a gap wider than a window (a sequence value taken and rolled back, many times)
        await conn.execute("DELETE FROM fu_applied_events WHERE applied_seq BETWEEN 9000 AND 12000")
        expected = [
            r["applied_seq"]
            for r in await conn.fetch(
                "SELECT applied_seq FROM fu_applied_events WHERE type = $1 ORDER BY applied_seq",
                UNKEPT,
            )
        ]
    walked: list[int] = []
    after, pages = 0, 0
    while True:
        page = await read_models_unordered(pool, after, 500, window=1_000)
        pages += 1
        walked.extend(entry.seq for entry in page if entry.seq is not None)
        if len(page) < 500:
            break
        after = walked[-1]
    assert walked == expected
    assert pages == len(expected) // 500 + 1
