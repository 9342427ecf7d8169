"""The refusal hints' prune (audit migrations 011, 012) on a real database: hints stored at
once over separate connections keep exactly what the two rules keep applied one insert at a
time (at most 16, the newest never lost, no error), and a pruning function owned by another
role than the tables' still prunes (#12, Round 38)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.database import HINTS_FUNCTION, prepare_database
from branchline_audit.domain.verification import RefusalHint
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import T0, audit_context, quick_settings, superuser

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEPT = 16
CONNECTIONS = 6
ROUNDS = 25
INSERT = (
    "INSERT INTO audit_refusal_hints (refused_size, held_size, failing_size, recorded_at) "
    "VALUES (100, NULL, $1, $2) RETURNING hint_id"
)


def kept_by_the_rules(stored: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(hint_id, failing_size)`` left by the two rules applied one insert at a time in id
    order, each to the rows there before the insert (migration 011: one DELETE): the new hint
    deletes every older one failing at or above it and every one but the 16 latest, itself
    included. Applying the cap after the first rule instead keeps one more at times: a CI run
    whose ids fell that way told them apart."""
    kept: list[tuple[int, int]] = []
    for hint in sorted(stored):
        kept = [*[k for k in kept[-(KEPT - 1) :] if k[1] < hint[1]], hint]
    return kept


async def _rows(settings: BranchlineSettings) -> list[tuple[int, int]]:
    async with superuser(settings) as conn:
        rows = await conn.fetch(
            "SELECT hint_id, failing_size FROM audit_refusal_hints ORDER BY hint_id"
        )
    return [(r["hint_id"], r["failing_size"]) for r in rows]


@contextlib.asynccontextmanager
async def writers(
    settings: BranchlineSettings, count: int
) -> AsyncIterator[list[asyncpg.Connection[Any]]]:
    """``count`` connections of their own, each acting as the writer (as the services' pools)."""
    conns = [await asyncpg.connect(settings.audit_database_url) for _ in range(count)]
    try:
        for conn in conns:
            await conn.execute(f'SET ROLE "{settings.audit_db_writer_role}"')
        yield conns
    finally:
        for conn in conns:
            await conn.close()


async def test_hints_stored_at_once_keep_what_one_at_a_time_would(
    settings: BranchlineSettings,
) -> None:
    """25 rounds of 6 hints stored at once, each on a connection of its own as the writer
    (failing sizes scrambled, with climbing runs that reach the cap): no insert fails, and
    after every round the rows are exactly those the rules keep applied in id order: never
    more than 16, the newest among them."""
    s = quick_settings(settings)
    await prepare_database(s)
    rng = random.Random(38)
    stored: list[tuple[int, int]] = []
    async with writers(s, CONNECTIONS) as conns:
        for round_ in range(ROUNDS):
            sizes = [
                rng.randint(1, 40) if round_ % 3 == 0 else 40 + round_ * CONNECTIONS + i
                for i in range(CONNECTIONS)
            ]
            ids = await asyncio.gather(
                *(conn.fetchval(INSERT, size, T0) for conn, size in zip(conns, sizes, strict=True))
            )
            stored += zip(ids, sizes, strict=True)
            rows = await _rows(s)
            assert rows == kept_by_the_rules(stored), round_
            assert len(rows) <= KEPT
            assert rows[-1] == max(stored)


async def _waits_or_done(settings: BranchlineSettings, pid: int, insert: asyncio.Task[Any]) -> None:
    """Until ``insert`` has finished or its backend waits on a lock: a condition, so that
    the first transaction commits only once the second insert has gone as far as it can."""
    async with superuser(settings) as conn:
        while not insert.done():
            waiting = await conn.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            )
            if waiting:
                return
            await asyncio.sleep(0.01)


async def test_a_hint_stored_while_another_is_uncommitted_prunes_it(
    settings: BranchlineSettings,
) -> None:
    """A hint's transaction still open when a second hint that supersedes it is stored: the
    second insert waits for the first to commit and then deletes it (without the advisory
    lock the second pruned without seeing it, and both stayed: fails so)."""
    s = quick_settings(settings)
    await prepare_database(s)
    async with writers(s, 2) as (first, second):
        older = await first.fetchval(INSERT, 20, T0)  # the table's first hint
        transaction = first.transaction()
        await transaction.start()
        held = await first.fetchval(INSERT, 30, T0)
        insert = asyncio.create_task(second.fetchval(INSERT, 25, T0))
        await _waits_or_done(s, second.get_server_pid(), insert)
        await transaction.commit()
        newer = await insert
    assert await _rows(s) == kept_by_the_rules([(older, 20), (held, 30), (newer, 25)])
    assert await _rows(s) == [(older, 20), (newer, 25)]


async def _own_the_prune(settings: BranchlineSettings, role: str) -> None:
    async with superuser(settings) as conn:
        await conn.execute(f'ALTER FUNCTION {HINTS_FUNCTION} OWNER TO "{role}"')


@pytest.mark.parametrize("owner", ["the login", "a role granted DELETE"])
async def test_a_prune_owned_by_another_role_than_the_tables_prunes(
    settings: BranchlineSettings, owner: str
) -> None:
    """The pruning function owned by another role than the tables' owner (an operator's
    provisioning: the login that migrated, a superuser, or a role given the right to delete
    hints): 40 hints stored as the writer through the product's path keep the 16 latest,
    none lost (011's guard let only the tables' owner delete: from the 17th on every hint
    was refused, a warning, and the first 16 stayed: fails on it)."""
    s = quick_settings(settings)
    role = f"branchline_audit_hints_{uuid.uuid4().hex[:12]}"
    async with audit_context(s) as audit:
        async with superuser(s) as conn:
            if owner == "the login":
                role = await conn.fetchval("SELECT current_user")
            else:
                await conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
                await conn.execute(f'GRANT SELECT, DELETE ON audit_refusal_hints TO "{role}"')
            tables_owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'audit_refusal_hints'"
            )
        assert role != tables_owner
        await _own_the_prune(s, role)
        try:
            for failing in range(1, 41):
                await audit.checkpoints.record_refusal_hint(
                    100, RefusalHint(held=None, failing=failing), now=T0
                )
            assert [f for _, f in await _rows(s)] == list(range(25, 41))
        finally:
            await _own_the_prune(s, s.audit_db_owner_role)
            if owner != "the login":
                async with superuser(s) as conn:
                    await conn.execute(f'REVOKE ALL ON audit_refusal_hints FROM "{role}"')
                    await conn.execute(f'DROP ROLE "{role}"')


async def test_a_direct_delete_stays_refused_with_the_flag_set(
    settings: BranchlineSettings,
) -> None:
    """The prune's flag set by hand and the DELETE sent as the role that owns the pruning
    function (the tables' owner): refused, outside the trigger (011 let it through)."""
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        await audit.checkpoints.record_refusal_hint(100, RefusalHint(held=None, failing=3), now=T0)
    async with superuser(s) as conn, conn.transaction():
        await conn.execute(f'SET LOCAL ROLE "{s.audit_db_owner_role}"')
        await conn.execute("SELECT set_config('branchline.audit_hints_superseded', 'on', true)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="insert-only"):
            await conn.execute("DELETE FROM audit_refusal_hints")
    assert [f for _, f in await _rows(s)] == [3]
