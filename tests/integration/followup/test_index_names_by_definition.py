"""Followup 016 (#12) against the real PostgreSQL: a database that a rebuild before round 18
left with generated index names (``LIKE ... INCLUDING ALL``), and with 013's dropped
``fu_tasks_open_of_client`` still there under one, ends with a fresh database's index names and
definitions; a fresh database is unchanged by 016; 016 runs again harmlessly; an index that is
not exactly a listed definition is left alone."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.pg_schemas import with_search_path
from branchline_shared.postgres.migrations import (
    Migration,
    concurrent_statements,
    load_migrations,
    migrate,
)
from branchline_shared.postgres.pool import ensure_database
from tests.support.stack import Infra, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPAIR = 16
FOLLOWUP = "branchline_followup.migrations"
DATABASE = (
    ("eventstore", "branchline_shared.eventstore.migrations"),
    ("followup", FOLLOWUP),
    ("followup-console", "branchline_followup.console_migrations"),
)
FROM_REPAIR = [0, sum(m.version >= REPAIR for m in load_migrations(FOLLOWUP)), 0]
"""What migrating a database at 015 applies: 016 and every followup migration after it (017's
status indexes, #12), nothing of the other series."""
STALE = "ON fu_read.fu_tasks USING btree (client_id) WHERE (status = 'open'::text)"
"""002's fu_tasks_open_of_client, which 013 dropped, as pg_get_indexdef prints it after its name."""


async def _database(admin_url: str) -> str:
    url = with_search_path(Infra(admin_url, "").database_url(unique("idxnames_")), "public")
    await ensure_database(url)
    return url


async def _migrate(url: str, below: dict[str, int] | None = None) -> list[int]:
    """Apply each series, only its versions below ``below[name]`` when given."""
    conn = await asyncpg.connect(url)
    try:
        applied = []
        for name, package in DATABASE:
            migrations: list[Migration] = load_migrations(package)
            if below is not None and name in below:
                migrations = [m for m in migrations if m.version < below[name]]
            applied.append(await migrate(conn, name, migrations))
        return applied
    finally:
        await conn.close()


async def _rebuild_as_before_round_18(url: str, n: int) -> None:
    """The schema swap of ``branchline rebuild followup`` before round 18 (pg_schemas at
    07ec6eb^): every fu_read table copied ``LIKE ... INCLUDING ALL`` into a new schema, which
    then replaces fu_read (the old one kept, retired). Rows do not matter here."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA fu_rebuild_{n}")
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'fu_read' ORDER BY tablename"
        )
        for (table,) in tables:
            await conn.execute(
                f"CREATE TABLE fu_rebuild_{n}.{table} (LIKE fu_read.{table} INCLUDING ALL)"
            )
        async with conn.transaction():
            await conn.execute(f"ALTER SCHEMA fu_read RENAME TO fu_retired_{n}")
            await conn.execute(f"ALTER SCHEMA fu_rebuild_{n} RENAME TO fu_read")
    finally:
        await conn.close()


async def _indexes(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET search_path = pg_catalog")
        return {
            "indexes": sorted(
                tuple(r)
                for r in await conn.fetch(
                    """SELECT t.relname, c.relname, pg_get_indexdef(c.oid), i.indisvalid
                       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                       JOIN pg_class t ON t.oid = i.indrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'fu_read'"""
                )
            ),
            "constraints": sorted(
                tuple(r)
                for r in await conn.fetch(
                    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(k.oid)
                       FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
                       WHERE n.nspname = 'fu_read'"""
                )
            ),
        }
    finally:
        await conn.close()


def _named(snapshot: dict[str, list[tuple[Any, ...]]]) -> set[str]:
    return {row[1] for row in snapshot["indexes"]}


def _with_definition(snapshot: dict[str, list[tuple[Any, ...]]], rest: str) -> list[str]:
    return [row[1] for row in snapshot["indexes"] if row[2] == f"CREATE INDEX {row[1]} {rest}"]


async def _fresh(admin_url: str) -> dict[str, list[tuple[Any, ...]]]:
    url = await _database(admin_url)
    await _migrate(url)
    return await _indexes(url)


async def _rebuilt_before_013(admin_url: str, *, again_after_015: bool) -> str:
    """Rebuilt when followup was at 012 (console at 005), then migrated to 015 (013's drop
    missing its index), and, when ``again_after_015``, rebuilt once more."""
    url = await _database(admin_url)
    await _migrate(url, {"followup": 13})
    await _rebuild_as_before_round_18(url, 1)
    await _migrate(url, {"followup": REPAIR})
    if again_after_015:
        await _rebuild_as_before_round_18(url, 2)
    return url


@pytest.mark.parametrize("again_after_015", [False, True], ids=["once", "twice"])
async def test_016_names_a_rebuilt_database_as_a_fresh_one_and_drops_013s_index(
    postgres_admin_url: str, again_after_015: bool
) -> None:
    fresh = await _fresh(postgres_admin_url)
    url = await _rebuilt_before_013(postgres_admin_url, again_after_015=again_after_015)
    before = await _indexes(url)
    # the state the repair is for: generated names, and 013's index kept under one
    assert "fu_tasks_work_list" not in _named(before)
    assert len(_with_definition(before, STALE)) == 1
    assert "fu_tasks_open_of_client" not in _named(before)
    assert before != fresh

    assert await _migrate(url) == FROM_REPAIR
    after = await _indexes(url)
    assert after == fresh
    assert _with_definition(after, STALE) == []


async def test_016_leaves_a_fresh_database_as_it_was(postgres_admin_url: str) -> None:
    url = await _database(postgres_admin_url)
    await _migrate(url, {"followup": REPAIR})
    before = await _indexes(url)
    assert await _migrate(url, {"followup": REPAIR + 1}) == [0, 1, 0]  # 016 alone
    assert await _indexes(url) == before


async def test_016_run_again_changes_nothing(postgres_admin_url: str) -> None:
    fresh = await _fresh(postgres_admin_url)
    url = await _rebuilt_before_013(postgres_admin_url, again_after_015=False)
    await _migrate(url)
    conn = await asyncpg.connect(url)
    try:
        # as a second replica finding it unrecorded, or a run interrupted before recording it
        await conn.execute(
            "DELETE FROM schema_migrations WHERE service = 'followup' AND version = $1", REPAIR
        )
    finally:
        await conn.close()
    assert await _migrate(url) == [0, 1, 0]
    assert await _indexes(url) == fresh


async def test_016_interrupted_before_its_drop_is_finished_by_the_next_run(
    postgres_admin_url: str,
) -> None:
    fresh = await _fresh(postgres_admin_url)
    url = await _rebuilt_before_013(postgres_admin_url, again_after_015=False)
    repair = next(m for m in load_migrations(FOLLOWUP) if m.version == REPAIR)
    block = concurrent_statements(repair.sql)[0]
    assert block.sql.startswith("DO ")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(block.sql)  # renamed, not yet dropped
    finally:
        await conn.close()
    renamed = await _indexes(url)
    assert _with_definition(renamed, STALE) == ["fu_tasks_open_of_client"]
    assert await _migrate(url) == FROM_REPAIR
    assert await _indexes(url) == fresh


async def test_016_touches_no_index_that_differs_from_a_listed_definition(
    postgres_admin_url: str,
) -> None:
    """Not a listed definition (another predicate), or a second copy of one whose migrated
    name is present: neither is provably a migration's, so both stay as they are."""
    url = await _rebuilt_before_013(postgres_admin_url, again_after_015=False)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE INDEX fu_tasks_client_id_idx9 ON fu_read.fu_tasks (client_id) "
            "WHERE status = 'closed'"
        )
        await conn.execute("CREATE INDEX fu_tasks_of_client_copy ON fu_read.fu_tasks (client_id)")
        await conn.execute(
            "CREATE INDEX fu_tasks_open_of_client_copy ON fu_read.fu_tasks (client_id) "
            "WHERE status = 'open' AND assignee IS NOT NULL"
        )
    finally:
        await conn.close()
    # up to 018: followup 019 drops the work list 016 names back
    before_019 = {"followup": 19}
    assert await _migrate(url, before_019) == [0, 19 - REPAIR, 0]
    after = _named(await _indexes(url))
    assert {
        "fu_tasks_client_id_idx9",
        "fu_tasks_of_client_copy",
        "fu_tasks_open_of_client_copy",
    } <= after
    assert "fu_tasks_work_list" in after
