"""The columns that hold a whole event get no planner statistics (#12: eventstore migration
006, followup 012, audit 007): ANALYZE skips them, and statistics built before the migration
are cleared, so no sample of events stays in pg_statistic. The other columns are analysed
as before, and a rebuild's copy of the read models keeps the setting."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.database import prepare_database as prepare_audit
from branchline_followup.adapters.pg_schemas import clone_schema, drop_schema
from branchline_followup.bootstrap import prepare_database as prepare_followup
from branchline_intake.bootstrap import prepare_database as prepare_intake
from branchline_shared.postgres.migrations import (
    EVENT_STORE_MIGRATIONS,
    load_migrations,
    migrate,
)
from branchline_shared.postgres.pool import ensure_database
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROWS = 200

_EVENTS = f"""
INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, occurred_at,
                       recorded_at, envelope)
SELECT gen_random_uuid(), 'client-' || g, 1, 'client.registered', 'client-' || g, now(), now(),
       jsonb_build_object('type', 'client.registered', 'data', jsonb_build_object('n', g))
FROM generate_series(1, {ROWS}) AS g
"""
_JOURNAL = f"""
INSERT INTO fu_read.fu_client_events (event_id, client_id, source, global_position,
                                      recorded_ms, envelope)
SELECT gen_random_uuid(), 'client-' || g, 'intake', g, g,
       jsonb_build_object('type', 'client.registered', 'data', jsonb_build_object('n', g))
FROM generate_series(1, {ROWS}) AS g
"""
# Both forms of entry: the event in its column (before audit migration 006) and in the bytes.
_LEDGER = f"""
INSERT INTO audit_ledger (position, event_id, event, event_type, appended_at, prev_hash, hash,
                          canonical)
SELECT g, gen_random_uuid(),
       CASE WHEN g % 2 = 0 THEN jsonb_build_object('n', g) END,
       'client.registered', now(), sha256(int8send(g)), sha256(int8send(g + 1)),
       convert_to('{{"n":' || g || '}}', 'UTF8')
FROM generate_series(1, {ROWS}) AS g
"""


async def _target(conn: asyncpg.Connection[Any], table: str, column: str) -> int | None:
    value = await conn.fetchval(
        "SELECT attstattarget FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
        table,
        column,
    )
    return None if value is None else int(value)


async def _analysed(conn: asyncpg.Connection[Any], schema: str, table: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_stats WHERE schemaname = $1 AND tablename = $2", schema, table
    )
    return {r["attname"] for r in rows}


async def _fill_and_analyse(
    url: str, sql: str, schema: str, table: str, columns: tuple[str, ...]
) -> set[str]:
    """Insert :data:`ROWS` rows, analyse; the columns analysed. Asserts the targets first."""
    conn = await asyncpg.connect(url)
    try:
        for column in columns:
            assert await _target(conn, f"{schema}.{table}", column) == 0, column
        await conn.execute(sql)
        await conn.execute(f"ANALYZE {schema}.{table}")
        return await _analysed(conn, schema, table)
    finally:
        await conn.close()


async def test_intake_store_analyses_no_envelope(settings: BranchlineSettings) -> None:
    await prepare_intake(settings)
    analysed = await _fill_and_analyse(
        settings.intake_database_url, _EVENTS, "public", "es_events", ("envelope",)
    )
    assert "stream_id" in analysed  # ANALYZE ran
    assert "envelope" not in analysed


async def test_followup_store_and_journal_analyse_no_envelope(
    settings: BranchlineSettings,
) -> None:
    await prepare_followup(settings)
    url = settings.followup_database_url
    events = await _fill_and_analyse(url, _EVENTS, "public", "es_events", ("envelope",))
    assert "type" in events
    assert "envelope" not in events
    journal = await _fill_and_analyse(url, _JOURNAL, "fu_read", "fu_client_events", ("envelope",))
    assert "client_id" in journal
    assert "envelope" not in journal


async def test_a_rebuilds_copy_of_the_journal_keeps_no_statistics(
    settings: BranchlineSettings,
) -> None:
    await prepare_followup(settings)
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        await clone_schema(conn, "fu_rebuild_stats")
        try:
            assert await _target(conn, "fu_rebuild_stats.fu_client_events", "envelope") == 0
            # only what was set is copied: the other columns keep the default
            assert await _target(conn, "fu_rebuild_stats.fu_client_events", "client_id") is None
        finally:
            await drop_schema(conn, "fu_rebuild_stats")
    finally:
        await conn.close()


async def test_audit_ledger_analyses_neither_event_nor_bytes(
    settings: BranchlineSettings,
) -> None:
    await prepare_audit(settings)
    analysed = await _fill_and_analyse(
        settings.audit_database_url, _LEDGER, "public", "audit_ledger", ("event", "canonical")
    )
    assert "event_type" in analysed
    assert not analysed & {"event", "canonical"}


async def test_statistics_built_before_the_migration_are_cleared(
    settings: BranchlineSettings,
) -> None:
    """A store analysed at migration 005 holds a sample of envelopes in pg_statistic; 006
    clears it (ANALYZE alone would keep it for good)."""
    url = settings.intake_database_url
    await ensure_database(url)
    name, package = EVENT_STORE_MIGRATIONS
    migrations = load_migrations(package)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, name, [m for m in migrations if m.version < 6])
        await conn.execute(_EVENTS)
        await conn.execute("ANALYZE es_events")
        assert "envelope" in await _analysed(conn, "public", "es_events")
        await migrate(conn, name, migrations)
        assert await _target(conn, "es_events", "envelope") == 0
        assert "envelope" not in await _analysed(conn, "public", "es_events")
        await conn.execute("ANALYZE es_events")
        assert await _analysed(conn, "public", "es_events") >= {"stream_id", "type"}
        assert "envelope" not in await _analysed(conn, "public", "es_events")
    finally:
        await conn.close()
