"""Re-projecting a client after a late event (D-05b) clears what the client's own events
wrote by ``client_id`` (``CLEAR_CLIENT``): its task and timer deletes read the client's index
entries, not the whole table, on the generic plans the worker's statements run on (#12,
followup migration 013). A client's open tasks are still read by the client's index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from branchline_followup.adapters.client_journal import CLEAR_CLIENT
from branchline_followup.adapters.collected_writes import CollectedStatement, add_timers
from branchline_followup.adapters.read_ahead import READ_AHEAD
from branchline_followup.adapters.read_models import SYNC_TIMERS
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_shared.settings import BranchlineSettings
from tests.support import generic_plans as plans

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENTS = 2000
TASKS_PER_CLIENT = 10

FILL = f"""
INSERT INTO fu_tasks (id, kind, rule, client_id, assignee, subject, opened_at, due_at,
                      deadline_profile, source_event_id, status)
SELECT gen_random_uuid(), 'survey', 'D-07', 'C-' || (n % {CLIENTS}), 'rm-' || (n % 50), 's',
       now(), now() + interval '3 days', 'calendar', gen_random_uuid(),
       CASE WHEN n % 3 = 0 THEN 'open' ELSE 'done' END
FROM generate_series(1, {CLIENTS * TASKS_PER_CLIENT}) AS n;
INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at)
SELECT gen_random_uuid(), id, client_id, 'due', due_at FROM fu_tasks;
INSERT INTO fu_client_events (event_id, client_id, source, global_position, recorded_ms,
                              envelope)
SELECT source_event_id, client_id, 'intake', NULL, 0, '{{}}'::jsonb FROM fu_tasks;
ANALYZE fu_tasks;
ANALYZE fu_timers;
ANALYZE fu_client_events;
"""


@pytest.fixture
async def filled(settings: BranchlineSettings) -> AsyncIterator[Any]:
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        async with pool.acquire() as conn:
            await conn.execute(FILL)
            yield conn
    finally:
        await pool.close()


async def generic_plan(conn: Any, statement: str, argument: str) -> str:
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE clear_probe AS {statement}")
        try:
            rows = await conn.fetch(f"EXPLAIN EXECUTE clear_probe('{argument}')")
        finally:
            await conn.execute("DEALLOCATE clear_probe")
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("table", ["fu_timers", "fu_tasks"])
async def test_clearing_a_client_reads_only_its_tasks_and_timers(filled: Any, table: str) -> None:
    statement = next(s for s in CLEAR_CLIENT if s.lstrip().startswith(f"DELETE FROM {table} "))
    plan = await generic_plan(filled, statement, "C-7")
    assert "Seq Scan on fu_tasks" not in plan, plan
    assert "Seq Scan on fu_timers" not in plan, plan
    assert "Seq Scan on fu_client_events" not in plan, plan


async def test_clearing_a_client_deletes_its_rows_and_no_other(filled: Any) -> None:
    conn = filled
    before = await conn.fetchval("SELECT count(*) FROM fu_tasks")
    async with conn.transaction():
        for statement in CLEAR_CLIENT[:2]:
            await conn.execute(statement, "C-7")
    assert await conn.fetchval("SELECT count(*) FROM fu_tasks WHERE client_id = 'C-7'") == 0
    assert await conn.fetchval("SELECT count(*) FROM fu_timers WHERE client_id = 'C-7'") == 0
    assert await conn.fetchval("SELECT count(*) FROM fu_tasks") == before - TASKS_PER_CLIENT
    assert await conn.fetchval("SELECT count(*) FROM fu_timers") == before - TASKS_PER_CLIENT


async def test_a_clients_open_tasks_are_read_by_its_index(filled: Any) -> None:
    plan = await generic_plan(
        filled, "SELECT id FROM fu_tasks WHERE client_id = $1 AND status = 'open'", "C-7"
    )
    assert "fu_tasks_of_client" in plan, plan


@pytest.fixture
async def unanalysed(settings: BranchlineSettings) -> AsyncIterator[Any]:
    """The tables filled as :data:`FILL` fills them, with no statistics yet (a new database
    before autovacuum's first ANALYZE: every task and timer open)."""
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                FILL.split("ANALYZE")[0].replace(
                    "CASE WHEN n % 3 = 0 THEN 'open' ELSE 'done' END", "'open'"
                )
            )
            yield pool
    finally:
        await pool.close()


async def test_a_batch_reads_its_clients_tasks_and_timers_by_their_index_before_analyze(
    unanalysed: Any,
) -> None:
    """#12: the read-ahead's open tasks and the timers' DELETE of a batch's collected writes
    read the clients' and the tasks' index entries on their generic plans, not the partial
    index of every open task (followup migration 014) or of every unfired timer (002), which
    a table without statistics made look small."""
    statement = CollectedStatement()
    add_timers(statement, (["t"], ["t"], ["c"], ["k"], ["f"], ["t"]))
    for sql in (READ_AHEAD, statement.sql or "", SYNC_TIMERS):
        plan = await plans.generic_plan(unanalysed, sql)
        assert "fu_tasks_open_by_due" not in plan, plan
        assert "fu_timers_due" not in plan, plan
    assert "fu_tasks_of_client" in await plans.generic_plan(unanalysed, READ_AHEAD)
