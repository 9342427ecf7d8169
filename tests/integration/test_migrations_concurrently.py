"""Migrations that build indexes CONCURRENTLY, outside a transaction (#12), against the real
PostgreSQL: a database migrated with the former texts upgrades without a refusal and ends
with the same schema as a new one; a build interrupted half-way leaves an INVALID index that
the next start drops and builds again; replicas starting together do not deadlock."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.pg_schemas import with_search_path
from branchline_shared.postgres.migrations import (
    Migration,
    MigrationError,
    load_migrations,
    migrate,
)
from branchline_shared.postgres.pool import ensure_database
from tests.support.migration_texts import as_formerly_shipped
from tests.support.stack import Infra, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EVENT_STORE = "branchline_shared.eventstore.migrations"
FOLLOWUP_DATABASE = (
    ("eventstore", EVENT_STORE),
    ("followup", "branchline_followup.migrations"),
    ("followup-console", "branchline_followup.console_migrations"),
)
AUDIT_DATABASE = (("audit", "branchline_audit.migrations"),)


async def _database(admin_url: str, prefix: str) -> str:
    url = with_search_path(Infra(admin_url, "").database_url(unique(prefix)), "public")
    await ensure_database(url)
    return url


async def _schema(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a schema dump would compare: tables' columns, indexes (with validity),
    constraints, triggers, functions, statistics targets, and the migrations recorded."""
    queries = {
        "columns": """
            SELECT table_schema, table_name, ordinal_position, column_name, data_type,
                   is_nullable, column_default, is_identity, identity_generation
            FROM information_schema.columns
            WHERE table_schema NOT IN ('pg_catalog', 'information_schema')""",
        "indexes": """
            SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid,
                   i.indisready, i.indisprimary, i.indisunique
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')""",
        "constraints": """
            SELECT n.nspname, conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)
            FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')""",
        "triggers": """
            SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
            FROM pg_trigger WHERE NOT tgisinternal""",
        "functions": """
            SELECT n.nspname, p.proname, pg_get_functiondef(p.oid)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')""",
        "statistics": """
            SELECT attrelid::regclass::text, attname, attstattarget FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
              AND a.attnum > 0 AND NOT a.attisdropped""",
        "migrations": "SELECT service, version, name FROM schema_migrations",
    }
    conn = await asyncpg.connect(url)
    try:
        return {
            part: sorted(tuple(r) for r in await conn.fetch(sql)) for part, sql in queries.items()
        }
    finally:
        await conn.close()


async def _migrate(url: str, series: list[tuple[str, list[Migration]]]) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [await migrate(conn, name, migrations) for name, migrations in series]
    finally:
        await conn.close()


def _shipped(database: tuple[tuple[str, str], ...]) -> list[tuple[str, list[Migration]]]:
    return [(name, load_migrations(package)) for name, package in database]


def _former(database: tuple[tuple[str, str], ...]) -> list[tuple[str, list[Migration]]]:
    return [(name, as_formerly_shipped(package)) for name, package in database]


@pytest.mark.parametrize("database", [FOLLOWUP_DATABASE, AUDIT_DATABASE], ids=["followup", "audit"])
async def test_a_database_migrated_with_the_former_texts_upgrades_to_the_same_schema(
    postgres_admin_url: str, database: tuple[tuple[str, str], ...]
) -> None:
    old = await _database(postgres_admin_url, "mig_old_")
    new = await _database(postgres_admin_url, "mig_new_")
    former, shipped = _former(database), _shipped(database)
    assert former != shipped  # some text of this database did change
    await _migrate(old, former)
    assert await _migrate(old, shipped) == [0] * len(database)  # accepted, nothing re-run
    await _migrate(new, shipped)
    assert await _schema(old) == await _schema(new)


async def test_a_database_half_way_upgrades_through_the_concurrent_builds(
    postgres_admin_url: str,
) -> None:
    """Applied with the former texts up to before the first concurrent build of each series,
    with rows in the tables the builds index; the rest applied CONCURRENTLY."""
    old = await _database(postgres_admin_url, "mig_half_")
    new = await _database(postgres_admin_url, "mig_new_")
    first = {"eventstore": 3, "followup": 11, "followup-console": 3}
    await _migrate(
        old,
        [
            (name, [m for m in ms if m.version < first[name]])
            for name, ms in _former(FOLLOWUP_DATABASE)
        ],
    )
    conn = await asyncpg.connect(old)
    try:
        await conn.execute(
            """INSERT INTO es_streams (stream_id, version)
               SELECT 'client-' || g, 1 FROM generate_series(1, 500) g"""
        )
    finally:
        await conn.close()
    applied = await _migrate(old, _shipped(FOLLOWUP_DATABASE))
    assert applied == [len(ms) - first[name] + 1 for name, ms in _shipped(FOLLOWUP_DATABASE)]
    await _migrate(new, _shipped(FOLLOWUP_DATABASE))
    assert await _schema(old) == await _schema(new)


async def test_an_applied_migration_edited_otherwise_is_still_refused(
    postgres_admin_url: str,
) -> None:
    url = await _database(postgres_admin_url, "mig_edit_")
    shipped = load_migrations(EVENT_STORE)
    await _migrate(url, [("eventstore", shipped)])
    edited = [
        Migration(m.version, m.name, m.sql.replace("(stream_id text_pattern_ops)", "(stream_id)"))
        for m in shipped
    ]
    assert edited != shipped
    with pytest.raises(MigrationError, match="008_stream_prefix_index was edited"):
        await _migrate(url, [("eventstore", edited)])
    # the former text of another migration is no former text of this one
    swapped = [
        Migration(m.version, m.name, shipped[2].sql if m.version == 8 else m.sql) for m in shipped
    ]
    with pytest.raises(MigrationError, match="008_stream_prefix_index was edited"):
        await _migrate(url, [("eventstore", swapped)])


async def _waiting_in_build(
    conn: asyncpg.Connection[Any], pid: int, statement: str = "CREATE INDEX CONCURRENTLY"
) -> None:
    """Until ``pid`` waits on a lock inside a statement that starts with ``statement``."""
    for _ in range(600):
        row = await conn.fetchrow(
            "SELECT query, wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
        )
        if row and row["wait_event_type"] == "Lock" and row["query"].startswith(statement):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the build never waited")


async def _asked_for_the_lock(conn: asyncpg.Connection[Any], pid: int) -> None:
    """Until ``pid`` has asked for the runner's lock (its last or current statement), so the
    build's wait for older snapshots meets it: a fixed 0.5 s could pass on a loaded machine
    before the second replica asked, and the test then passed without the race it is about."""
    for _ in range(600):
        query = await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        if query is not None and "advisory_lock" in query:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second replica never asked for the runner's lock")


async def _index(conn: asyncpg.Connection[Any], name: str) -> tuple[int, bool] | None:
    row = await conn.fetchrow(
        """SELECT c.oid, i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
           WHERE c.relname = $1""",
        name,
    )
    return None if row is None else (int(row["oid"]), bool(row["indisvalid"]))


async def test_an_interrupted_build_leaves_an_invalid_index_the_next_start_rebuilds(
    postgres_admin_url: str,
) -> None:
    url = await _database(postgres_admin_url, "mig_cut_")
    shipped = load_migrations(EVENT_STORE)
    await _migrate(url, [("eventstore", [m for m in shipped if m.version < 8])])
    blocker, watcher, runner = [await asyncpg.connect(url) for _ in range(3)]
    try:
        await blocker.execute(
            "INSERT INTO es_streams (stream_id, version) SELECT 'c-' || g, 1 "
            "FROM generate_series(1, 100) g"
        )
        # A writer's open transaction: the build waits for it, and is interrupted there.
        await blocker.execute("BEGIN; INSERT INTO es_streams (stream_id, version) VALUES ('w', 1)")
        build = asyncio.create_task(migrate(runner, "eventstore", shipped))
        await _waiting_in_build(watcher, runner.get_server_pid())
        await watcher.execute("SELECT pg_cancel_backend($1)", runner.get_server_pid())
        with pytest.raises(asyncpg.QueryCanceledError):
            await build
        await blocker.execute("COMMIT")
        left = await _index(watcher, "es_streams_prefix")
        assert left is not None
        assert left[1] is False  # INVALID
        assert await watcher.fetchval("SELECT max(version) FROM schema_migrations") == 7
        # 008 again, and the migrations after it
        assert await migrate(runner, "eventstore", shipped) == len(
            [m for m in shipped if m.version >= 8]
        )
        rebuilt = await _index(watcher, "es_streams_prefix")
        assert rebuilt is not None
        assert rebuilt[1] is True
        assert rebuilt[0] != left[0]  # dropped and built again, not kept
    finally:
        for conn in (blocker, watcher, runner):
            await conn.close()
    fresh = await _database(postgres_admin_url, "mig_new_")
    await _migrate(fresh, [("eventstore", shipped)])
    assert await _schema(url) == await _schema(fresh)


async def test_an_interrupted_drop_is_finished_by_the_next_start(
    postgres_admin_url: str,
) -> None:
    """Audit 005: the new index built, the old one's DROP INDEX CONCURRENTLY interrupted while
    it waits for a reader of the ledger (it has marked the index INVALID by then)."""
    url = await _database(postgres_admin_url, "mig_drop_")
    shipped = load_migrations("branchline_audit.migrations")
    await _migrate(url, [("audit", [m for m in shipped if m.version < 5])])
    reader, watcher, runner = [await asyncpg.connect(url) for _ in range(3)]
    try:
        # A reader's open transaction: no snapshot held between statements (the build does
        # not wait for it), but a lock on the ledger the drop waits for.
        await reader.execute("BEGIN; SELECT count(*) FROM audit_ledger")
        drop = asyncio.create_task(migrate(runner, "audit", shipped))
        await _waiting_in_build(watcher, runner.get_server_pid(), "DROP INDEX CONCURRENTLY")
        await watcher.execute("SELECT pg_cancel_backend($1)", runner.get_server_pid())
        with pytest.raises(asyncpg.QueryCanceledError):
            await drop
        await reader.execute("COMMIT")
        built = await _index(watcher, "audit_ledger_type_prefix")
        assert built is not None
        assert built[1] is True
        left = await _index(watcher, "audit_ledger_type")
        assert left is not None
        assert left[1] is False
        assert await migrate(runner, "audit", shipped) == len(shipped) - 4
        assert await _index(watcher, "audit_ledger_type") is None
        assert await _index(watcher, "audit_ledger_type_prefix") == built  # kept as built
    finally:
        for conn in (reader, watcher, runner):
            await conn.close()
    fresh = await _database(postgres_admin_url, "mig_new_")
    await _migrate(fresh, [("audit", shipped)])
    assert await _schema(url) == await _schema(fresh)


async def test_replicas_starting_together_migrate_once_without_a_deadlock(
    postgres_admin_url: str,
) -> None:
    """One replica builds CONCURRENTLY while a writer's transaction holds it up; a second
    replica waits for the runner's lock meanwhile. A replica blocked in pg_advisory_lock would
    hold a snapshot the build waits for, while it waits for the builder: a deadlock."""
    url = await _database(postgres_admin_url, "mig_two_")
    shipped = load_migrations(EVENT_STORE)
    await _migrate(url, [("eventstore", [m for m in shipped if m.version < 8])])
    blocker, watcher, first, second = [await asyncpg.connect(url) for _ in range(4)]
    try:
        await blocker.execute("BEGIN; INSERT INTO es_streams (stream_id, version) VALUES ('w', 1)")
        one = asyncio.create_task(migrate(first, "eventstore", shipped))
        await _waiting_in_build(watcher, first.get_server_pid())
        two = asyncio.create_task(migrate(second, "eventstore", shipped))
        await _asked_for_the_lock(watcher, second.get_server_pid())
        assert not two.done()
        await blocker.execute("COMMIT")
        assert sorted(await asyncio.gather(one, two)) == [0, len(shipped) - 7]
        assert await _index(watcher, "es_streams_prefix") is not None
    finally:
        for conn in (blocker, watcher, first, second):
            await conn.close()


async def test_a_no_transaction_migration_refuses_a_connection_in_a_transaction(
    postgres_admin_url: str,
) -> None:
    url = await _database(postgres_admin_url, "mig_tx_")
    migrations = [
        Migration(1, "t", "CREATE TABLE t (x int);"),
        Migration(
            2,
            "t_x",
            "-- branchline: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (x);",
        ),
    ]
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            with pytest.raises(MigrationError, match="outside a transaction"):
                await migrate(conn, "t", migrations)
        assert await conn.fetchval("SELECT to_regclass('t')") is None  # nothing applied
        assert await migrate(conn, "t", migrations) == 2
        assert await _index(conn, "t_x") is not None
    finally:
        await conn.close()
