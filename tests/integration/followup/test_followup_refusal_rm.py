"""The client's RM on its refusals (console migration 004, #12): a refusal carries its
client's current RM (NULL: no client known), kept in the transaction of every write of the
client, live (the worker's upsert, a client's re-registration to another RM, the client
journal's clear and re-projection after a late event) and in a rebuild, which ends equal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters import (
    client_journal,
    collected_writes,
    console_refusals,
    pg_schemas,
    read_models,
)
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.reprojection import REPROJECTIONS
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc
from tests.integration.followup.test_followup_order import (
    _context,
    apply_all,
    differences_from_rebuild,
    positioned,
)
from tests.support.events import TELLER
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Selection = console_refusals.RefusalSelection


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(infra, tmp_path)


@pytest.fixture
async def context(settings: BranchlineSettings) -> AsyncIterator[FollowupContext]:
    async with _context(settings) as ctx:
        yield ctx


def refused(h: History, client_id: str, at: datetime, rule: str = "D-05") -> RecordedEvent:
    actor = TELLER.model_dump(mode="json")
    return h.add(
        "rule.violation_refused",
        client_id,
        at,
        {
            "rule": rule,
            "title": "Above the client's tolerance",
            "detail": "refused",
            "refused_event": {
                "type": "visit.arrived",
                "occurred_at": at.isoformat(),
                "client_id": client_id,
                "branch_id": "BR-001",
                "actor": actor,
                "data": {},
            },
            "submitted_by": actor,
        },
    )


def reassigning_history() -> tuple[list[RecordedEvent], RecordedEvent]:
    """C-a registered to rm-1, refused, re-registered to rm-3, refused again; C-b refused
    before it is registered to rm-2; C-z refused and never registered. Also C-a's first
    registration (to be delivered late)."""
    h = History()
    t = now_utc() - timedelta(hours=2)
    first = h.registered("C-a", t, rm_id="rm-1")
    refused(h, "C-a", t + timedelta(minutes=1))
    refused(h, "C-b", t + timedelta(minutes=2), rule="D-03")
    refused(h, "C-z", t + timedelta(minutes=3))
    h.registered("C-b", t + timedelta(minutes=4), rm_id="rm-2")
    h.registered("C-a", t + timedelta(minutes=5), rm_id="rm-3")
    refused(h, "C-a", t + timedelta(minutes=6), rule="D-03")
    return h.events, first


async def rms_of_refusals(ctx: FollowupContext) -> list[tuple[str, str | None]]:
    rows = await ctx.pool.fetch("SELECT client_id, rm_id FROM fu_refusals ORDER BY occurred_at")
    return [(r["client_id"], r["rm_id"]) for r in rows]


WANTED = [("C-a", "rm-3"), ("C-b", "rm-2"), ("C-z", None), ("C-a", "rm-3")]


async def clients_of(ctx: FollowupContext, selection: Selection) -> list[Any]:
    page = await console_refusals.refusals(ctx.pool, selection)
    return [r["client_id"] for r in page.rows]


async def test_a_refusal_carries_its_clients_current_rm_live_and_rebuilt(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    assert await rms_of_refusals(context) == WANTED
    # the teams' pages: the former RM's team no longer sees C-a's refusals
    assert await clients_of(context, Selection(rm_in=frozenset({"rm-3"}))) == ["C-a", "C-a"]
    assert await clients_of(context, Selection(rm_in=frozenset({"rm-1"}))) == []
    assert await clients_of(context, Selection(rm_in=frozenset({"rm-1", "rm-2"}))) == ["C-b"]
    assert await clients_of(context, Selection(rule="D-03", rm_in=frozenset({"rm-2", "rm-3"}))) == [
        "C-a",
        "C-b",
    ]
    # the default supervisor's team (everyone but the named) and an admin's (any client)
    assert await clients_of(context, Selection(rm_not_in=frozenset({"rm-3"}))) == ["C-b"]
    assert await clients_of(context, Selection(any_client=True)) == ["C-a", "C-z", "C-b", "C-a"]
    assert await clients_of(context, Selection()) == ["C-a", "C-b", "C-a"]
    assert await differences_from_rebuild(settings, positioned(events)) == {}


def _reprojections() -> float:
    return float(REPROJECTIONS._value.get())


async def test_a_late_registration_reprojects_the_client_and_its_refusals_follow(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """C-a's first registration (to rm-1) arrives after its re-registration (to rm-3): the
    client journal clears C-a (its refusals lose their RM) and projects it again in source
    order (rm-1, then rm-3): its refusals end with rm-3, as in order and as rebuilt."""
    events, first = reassigning_history()
    placed = positioned(events)
    late = next(p for p in placed if p[0] is first)
    before = _reprojections()
    await apply_all(context, [p for p in placed if p is not late])
    assert await rms_of_refusals(context) == WANTED  # C-a known (rm-3) from its re-registration
    await apply_all(context, [late])
    assert _reprojections() == before + 1
    assert await rms_of_refusals(context) == WANTED
    assert await differences_from_rebuild(settings, placed) == {}


async def test_the_journals_clear_and_save_move_the_refusals_in_their_transaction(
    context: FollowupContext,
) -> None:
    """Within one transaction: the clear (a client deleted) leaves its refusals without an
    RM; the client saved again gives them its RM; a refusal of a client never saved keeps
    none. Rolled back, nothing changed."""
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    async with context.pool.acquire() as conn:
        facts = await read_models.fetch_client(conn, "C-a")
        assert facts is not None
        tx = conn.transaction()
        await tx.start()
        try:
            for statement in client_journal.CLEAR_CLIENT:
                await conn.execute(statement, "C-a")
            rows = await conn.fetch("SELECT rm_id FROM fu_refusals WHERE client_id = 'C-a'")
            assert [r["rm_id"] for r in rows] == [None, None]
            facts.rm_id = "rm-9"
            await read_models.save_client(conn, facts)
            rows = await conn.fetch("SELECT rm_id FROM fu_refusals WHERE client_id = 'C-a'")
            assert [r["rm_id"] for r in rows] == ["rm-9", "rm-9"]
        finally:
            await tx.rollback()
    assert await rms_of_refusals(context) == WANTED


async def _refusal_rms(conn: Any, schema: str) -> list[tuple[str, str | None]]:
    rows = await conn.fetch(
        f"SELECT client_id, rm_id FROM {schema}.fu_refusals ORDER BY occurred_at, event_id"
    )
    return [(r["client_id"], r["rm_id"]) for r in rows]


A_REFUSAL = (
    "INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, client_id, "
    "refused_type, actor_id, actor_role) "
    "VALUES (gen_random_uuid(), 'D-05', 't', now(), now(), $1, 'x', 'a', 'r')"
)


def live_dsn(settings: BranchlineSettings) -> str:
    return pg_schemas.with_search_path(settings.followup_database_url, pg_schemas.LIVE_SCHEMA)


_PLANNED = (
    "SELECT ident FROM pg_backend_memory_contexts WHERE name = 'CachedPlanSource' AND ident LIKE $1"
)


async def test_the_triggers_statements_are_planned_once_per_session(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """Console migration 005 (#12): a client's and a refusal's writes in the session's own
    schema run the triggers' static statements, kept planned in the session (a
    CachedPlanSource each: one per trigger that ran it), not 004's EXECUTE, which parsed and
    planned at every firing and kept nothing."""
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    conn = await asyncpg.connect(live_dsn(settings))
    try:
        facts = await read_models.fetch_client(conn, "C-a")
        assert facts is not None
        async with conn.transaction():
            for statement in client_journal.CLEAR_CLIENT:
                await conn.execute(statement, "C-a")  # the delete trigger's
            await read_models.save_client(conn, facts)  # the insert trigger's
            facts.rm_id = "rm-8"
            await read_models.save_client(conn, facts)  # the RM change's
            await conn.execute(A_REFUSAL, "C-a")  # the refusal's
        planned = [r["ident"] for r in await conn.fetch(_PLANNED, "%fu_refusals r SET rm_id%")]
        assert len(planned) == 3, planned
        assert len(await conn.fetch(_PLANNED, "%FROM fu_clients c WHERE c.client_id%")) == 1
        assert await _refusal_rms(conn, "fu_read") == [
            ("C-a", "rm-8"),
            ("C-b", "rm-2"),
            ("C-z", None),
            ("C-a", "rm-8"),
            ("C-a", "rm-8"),
        ]
    finally:
        await conn.close()


_SEQUENTIAL_SCANS = (
    "SELECT relname, seq_scan FROM pg_stat_xact_user_tables "
    "WHERE schemaname = 'fu_read' AND relname IN ('fu_clients', 'fu_refusals') "
    "ORDER BY relname"
)


async def test_statements_planned_on_tables_analysed_empty_still_read_by_index(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """The triggers' statements are planned once per session and kept until the statistics
    change: planned while fu_clients and fu_refusals were analysed empty (a rebuild's first
    ANALYZE), they still read a client's rows by index once the tables have grown (a plan made
    then would otherwise be a sequential scan, kept: 20 ms per new client at 50,000
    refusals)."""
    conn = await asyncpg.connect(live_dsn(settings))
    try:
        await conn.execute("ANALYZE fu_read.fu_clients; ANALYZE fu_read.fu_refusals")
        h = History()
        t = now_utc() - timedelta(hours=1)
        h.registered("C-0", t, rm_id="rm-1")
        await apply_all(context, positioned(h.events))
        c0 = await read_models.fetch_client(conn, "C-0")
        assert c0 is not None
        c0.client_id = "C-1"
        async with conn.transaction():  # as the worker's units: generic plans
            await pg_schemas.hold_swap_lock_shared(conn, generic_plans=True)
            await read_models.save_client(conn, c0)  # planned here, on the empty statistics
            await conn.execute(A_REFUSAL, "C-1")
        await conn.executemany(A_REFUSAL, [(f"C-{n % 50 + 2}",) for n in range(2000)])
        await conn.executemany(
            read_models._SAVE_CLIENT,
            [read_models.client_row(replace(c0, client_id=f"K-{n}")) for n in range(500)],
        )
        async with conn.transaction():
            await pg_schemas.hold_swap_lock_shared(conn, generic_plans=True)
            # this session's counts not yet reported (no report within a transaction)
            before = [tuple(r) for r in await conn.fetch(_SEQUENTIAL_SCANS)]
            c0.client_id = "C-2"
            await read_models.save_client(conn, c0)  # its 40 refusals take rm-1
            c0.rm_id = "rm-2"
            await read_models.save_client(conn, c0)
            await conn.execute(A_REFUSAL, "C-2")
            await conn.execute("DELETE FROM fu_clients WHERE client_id = 'C-1'")
            after = [tuple(r) for r in await conn.fetch(_SEQUENTIAL_SCANS)]
        assert [n for _, n in before] == [n for _, n in after]
        assert [t for t, _ in after] == ["fu_clients", "fu_refusals"]
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM fu_refusals WHERE client_id = 'C-2' AND rm_id = 'rm-2'"
            )
            == 41
        )
    finally:
        await conn.close()


async def test_a_session_planned_before_a_swap_writes_the_swapped_in_tables(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """One live connection fires every trigger (their statements planned against fu_read),
    a rebuild is swapped in (fu_read renamed to fu_retired_<n>, the rebuilt schema to
    fu_read), and the same connection's writes then move the refusals of the new fu_read:
    the retired tables keep what they had."""
    events, _ = reassigning_history()
    placed = positioned(events)
    await apply_all(context, placed)
    conn = await asyncpg.connect(live_dsn(settings))
    try:
        a = await read_models.fetch_client(conn, "C-a")
        b = await read_models.fetch_client(conn, "C-b")
        assert a is not None
        assert b is not None
        a.rm_id = "rm-4"
        await read_models.save_client(conn, a)
        await conn.execute(A_REFUSAL, "C-a")
        async with conn.transaction():
            await conn.execute("DELETE FROM fu_clients WHERE client_id = 'C-b'")
            await read_models.save_client(conn, b)
        assert len(await conn.fetch(_PLANNED, "%fu_refusals r SET rm_id%")) == 3
        moved = [("C-a", "rm-4"), *WANTED[1:3], ("C-a", "rm-4"), ("C-a", "rm-4")]
        assert await _refusal_rms(conn, "fu_read") == moved
        # the rebuild replays the events only (rm-3 for C-a), then is swapped in
        differences = await differences_from_rebuild(settings, placed)
        assert set(differences) == {"fu_clients", "fu_refusals"}  # what was written raw
        retired = await conn.fetchval(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'fu_retired_%'"
        )
        assert await _refusal_rms(conn, "fu_read") == WANTED
        a.rm_id = "rm-5"
        await read_models.save_client(conn, a)
        await conn.execute(A_REFUSAL, "C-a")
        async with conn.transaction():
            await conn.execute("DELETE FROM fu_clients WHERE client_id = 'C-b'")
            assert (await _refusal_rms(conn, "fu_read"))[1] == ("C-b", None)
            b.rm_id = "rm-6"
            await read_models.save_client(conn, b)
        assert await _refusal_rms(conn, "fu_read") == [
            ("C-a", "rm-5"),
            ("C-b", "rm-6"),
            ("C-z", None),
            ("C-a", "rm-5"),
            ("C-a", "rm-5"),
        ]
        assert await _refusal_rms(conn, retired) == moved
    finally:
        await conn.close()


async def test_a_write_by_qualified_name_from_another_schema_and_a_changed_client_id(
    context: FollowupContext, settings: BranchlineSettings
) -> None:
    """A session whose search_path does not start with the written table's schema takes
    the dynamic statements, which write that schema (not the session's); a client's row
    given another client id (no writer does) leaves the former id's refusals without an RM
    and gives the new id's its RM; a refusal moved to another client takes that client's."""
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    public = pg_schemas.with_search_path(settings.followup_database_url, "public")
    for dsn in (public, live_dsn(settings)):
        conn = await asyncpg.connect(dsn)
        schema = "fu_read." if dsn == public else ""
        try:
            async with conn.transaction():
                # no writer does this: C-a's row becomes C-z's (C-z refused, never registered)
                await conn.execute(
                    f"UPDATE {schema}fu_clients SET client_id = 'C-z' WHERE client_id = 'C-a'"
                )
                assert await _refusal_rms(conn, "fu_read") == [
                    ("C-a", None),
                    ("C-b", "rm-2"),
                    ("C-z", "rm-3"),
                    ("C-a", None),
                ]
                await conn.execute(
                    f"UPDATE {schema}fu_refusals SET client_id = 'C-b' WHERE client_id = 'C-z'"
                )
                await conn.execute(
                    f"UPDATE {schema}fu_refusals SET client_id = NULL, rm_id = 'rm-x' "
                    "WHERE client_id = 'C-a' AND rule = 'D-03'"
                )
                assert await _refusal_rms(conn, "fu_read") == [
                    ("C-a", None),
                    ("C-b", "rm-2"),
                    ("C-b", "rm-2"),
                    (None, None),
                ]
                raise _RolledBack
        except _RolledBack:
            pass
        finally:
            await conn.close()
        assert await rms_of_refusals(context) == WANTED


class _RolledBack(Exception):
    pass


_A_REFUSAL_PART = (
    "INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, client_id, "
    "refused_type, actor_id, actor_role) "
    "VALUES (gen_random_uuid(), 'D-05', 't', now(), now(), {0}::text, 'x', 'a', 'r')"
)


def _batch(
    clients: list[Any], refusing: list[str], schema: str = ""
) -> collected_writes.CollectedStatement:
    """The worker's one statement of a batch (:mod:`.collected_writes`): ``clients`` upserted
    by one part, a refusal of each of ``refusing`` inserted by parts of the same statement."""
    statement = collected_writes.CollectedStatement()
    collected_writes.add_clients(statement, clients)
    for client_id in refusing:
        statement.add(
            (_A_REFUSAL_PART.replace("fu_refusals", f"{schema}fu_refusals"),), [client_id]
        )
    return statement


async def test_a_batch_inserting_and_updating_clients_in_one_statement_moves_their_refusals(
    context: FollowupContext, settings: BranchlineSettings
) -> None:
    """The worker's batch statement upserts many clients at once: each inserted client's
    refusals (earlier ones, and one the same statement inserts) take its RM, an updated
    client's refusals follow its new RM, a client without refusals changes none; the same
    from a session whose search_path starts elsewhere (the table named with its schema)."""
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    a = await read_models.fetch_client(context.pool, "C-a")
    assert a is not None
    public = pg_schemas.with_search_path(settings.followup_database_url, "public")
    for dsn in (live_dsn(settings), public):
        conn = await asyncpg.connect(dsn)
        schema = "fu_read." if dsn == public else ""
        try:
            new = [replace(a, client_id=c, rm_id=f"rm-{c}") for c in ("C-n1", "C-n2", "C-n3")]
            moved = [replace(a, rm_id="rm-7"), *new, replace(a, client_id="C-z", rm_id="rm-z")]
            statement = _batch(moved, ["C-n2", "C-n3"], schema)
            if schema:  # the parts name their tables without a schema: qualify them
                sql = (statement.sql or "").replace("INTO fu_clients", "INTO fu_read.fu_clients")
            else:
                sql = statement.sql or ""
            async with conn.transaction():
                await conn.executemany(
                    A_REFUSAL.replace("fu_refusals", f"{schema}fu_refusals"),
                    [("C-n1",), ("C-n1",), ("C-n2",)],
                )
                await conn.execute(sql, *statement.args)
                rows = await conn.fetch(
                    "SELECT client_id, rm_id FROM fu_read.fu_refusals "
                    "ORDER BY client_id, occurred_at, event_id"
                )
                assert [tuple(r) for r in rows] == [
                    ("C-a", "rm-7"),
                    ("C-a", "rm-7"),
                    ("C-b", "rm-2"),
                    ("C-n1", "rm-C-n1"),
                    ("C-n1", "rm-C-n1"),
                    ("C-n2", "rm-C-n2"),
                    ("C-n2", "rm-C-n2"),
                    ("C-n3", "rm-C-n3"),
                    ("C-z", "rm-z"),
                ]
                raise _RolledBack
        except _RolledBack:
            pass
        finally:
            await conn.close()
        assert await rms_of_refusals(context) == WANTED


_CALLS_OF_CLIENTS_TRIGGERS = (
    "SELECT coalesce(sum(pg_stat_get_xact_function_calls(f)), 0) FROM (SELECT DISTINCT "
    "tgfoid FROM pg_trigger WHERE tgrelid = 'fu_read.fu_clients'::regclass AND NOT tgisinternal"
    ") AS t(f)"
)
_REFUSALS_READ = (
    "SELECT seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables "
    "WHERE schemaname = 'fu_read' AND relname = 'fu_refusals'"
)


async def test_a_batch_of_new_clients_runs_the_insert_trigger_once_reading_their_refusals_only(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """Console migration 006 (#12): the worker's statement inserting 20 new clients calls a
    trigger function of fu_clients once (004's row trigger: 20 calls, 20 UPDATEs), and its
    one UPDATE reads by index the 800 refusals of those clients only, although it was
    planned for a batch of 200 while fu_clients and fu_refusals were analysed empty (a hash
    or merge join planned then reads the whole of fu_refusals, 2,001 refusals here: checked
    with enable_seqscan off alone)."""
    conn = await asyncpg.connect(live_dsn(settings))
    try:
        await conn.execute("ANALYZE fu_read.fu_clients; ANALYZE fu_read.fu_refusals")
        h = History()
        h.registered("C-0", now_utc() - timedelta(hours=1), rm_id="rm-1")
        await apply_all(context, positioned(h.events))
        c0 = await read_models.fetch_client(conn, "C-0")
        assert c0 is not None
        async with conn.transaction():  # as the worker's units: generic plans
            await pg_schemas.hold_swap_lock_shared(conn, generic_plans=True)
            first = _batch([replace(c0, client_id=f"P-{n}") for n in range(200)], ["P-1"])
            await conn.execute(first.sql or "", *first.args)  # planned on the empty statistics
        await conn.executemany(A_REFUSAL, [(f"C-{n % 50 + 2}",) for n in range(2000)])
        batch = [replace(c0, client_id=f"C-{n}", rm_id="rm-2") for n in range(2, 22)]
        statement = _batch(batch, [])
        async with conn.transaction():
            await pg_schemas.hold_swap_lock_shared(conn, generic_plans=True)
            await conn.execute("SET LOCAL track_functions = 'pl'")
            before = tuple(await conn.fetchrow(_REFUSALS_READ) or ())
            await conn.execute(statement.sql or "", *statement.args)
            calls = await conn.fetchval(_CALLS_OF_CLIENTS_TRIGGERS)
            after = tuple(await conn.fetchrow(_REFUSALS_READ) or ())
        assert calls == 1
        assert (after[0] - before[0], after[1] - before[1]) == (0, 800)
        assert await conn.fetchval("SELECT count(*) FROM fu_refusals WHERE rm_id = 'rm-2'") == 800
    finally:
        await conn.close()
