"""Insert-only at the database level (ADR-0006): grants and the trigger, not the code."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.database import prepare_database
from branchline_audit.domain.records import pruned_marker
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    event,
    quick_settings,
    superuser,
)
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TABLES = ("audit_ledger", "audit_merkle_nodes", "audit_checkpoints", "audit_restricted_clients")
CHANGES = (
    "UPDATE {table} SET {column} = {column}",
    "DELETE FROM {table}",
    "TRUNCATE {table}",
)
FIRST_COLUMN = {
    "audit_ledger": "event",
    "audit_merkle_nodes": "hash",
    "audit_checkpoints": "note",
    "audit_restricted_clients": "state",
}


@pytest.fixture
async def filled(settings: BranchlineSettings) -> BranchlineSettings:
    """A ledger with rows in every audit table."""
    from branchline_audit.application.checkpointing import checkpoint_now

    s = quick_settings(settings)
    async with audit_context(s) as audit:
        events = [event(i) for i in range(40)]
        events.append(event(41, event_type="client.erasure_requested", data={"reason": "x"}))
        await append_in_batches(audit.ledger, events, now=T0)
        await checkpoint_now(audit)
    return s


async def _as_role(settings: BranchlineSettings, role: str, sql: str) -> None:
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        await conn.execute(sql)


async def _row_counts(settings: BranchlineSettings) -> dict[str, int]:
    async with superuser(settings) as conn:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


async def _refused_and_unchanged(
    settings: BranchlineSettings, role: str, table: str, change: str, *, refusal: str
) -> None:
    """``change`` to ``table`` as ``role`` is refused with ``refusal`` and no row changes."""
    before = await _row_counts(settings)
    sql = change.format(table=table, column=FIRST_COLUMN[table])
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
        await _as_role(settings, role, sql)
    assert await _row_counts(settings) == before


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("change", CHANGES)
async def test_the_service_role_may_not_change_history(
    filled: BranchlineSettings, table: str, change: str
) -> None:
    await _refused_and_unchanged(
        filled, filled.audit_db_writer_role, table, change, refusal="permission denied"
    )


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("change", CHANGES)
async def test_even_the_owner_is_refused_by_the_trigger(
    filled: BranchlineSettings, table: str, change: str
) -> None:
    await _refused_and_unchanged(
        filled, filled.audit_db_owner_role, table, change, refusal="insert-only"
    )


async def test_the_owner_cannot_forge_the_prune_flag(filled: BranchlineSettings) -> None:
    """Setting the retention flag by hand is not the retention function; and even inside it
    only a payload drop that keeps every hash passes the trigger."""
    # rewriting a hash is never a prune
    await _forged_prune_refused(filled, also_set=", hash = sha256(hash)")


async def _forged_prune_refused(settings: BranchlineSettings, *, also_set: str = "") -> None:
    """As the owner, with the retention flag set by hand, entry 3's payload replaced by its
    prune marker (and ``also_set``) is refused by the trigger."""
    async with superuser(settings) as conn:
        row = await conn.fetchrow(
            "SELECT coalesce(event, audit_entry_event(canonical, position)) AS event "
            "FROM audit_ledger WHERE position = 3"
        )
        assert row is not None
        marker = json.dumps(pruned_marker(json.loads(row["event"]), pruned_at=T0))
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {settings.audit_db_owner_role}")
            await conn.execute("SELECT set_config('branchline.audit_prune', 'on', true)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="insert-only"):
                await conn.execute(
                    f"UPDATE audit_ledger SET event = $1::jsonb, pruned_at = now(){also_set} "
                    "WHERE position = 3",
                    marker,
                )


@pytest.mark.parametrize("role", ["writer", "owner"])
async def test_stored_canonical_bytes_cannot_be_changed(
    filled: BranchlineSettings, role: str
) -> None:
    """Issue 9: the canonical bytes column is as insert-only as the rest of the row; not even
    a forged prune (flag set by hand) may keep or rewrite them."""
    name = filled.audit_db_writer_role if role == "writer" else filled.audit_db_owner_role
    expected = "permission denied" if role == "writer" else "insert-only"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=expected):
        await _as_role(
            filled, name, "UPDATE audit_ledger SET canonical = canonical || '\\x00'::bytea"
        )
    async with superuser(filled) as conn:
        canonical = await conn.fetchval("SELECT canonical FROM audit_ledger WHERE position = 3")
        assert canonical is not None
    # a prune that keeps the canonical bytes is no prune
    await _forged_prune_refused(filled)


async def test_the_writer_may_not_call_the_retention_function(
    filled: BranchlineSettings,
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await _as_role(
            filled,
            filled.audit_db_writer_role,
            "SELECT audit_prune_entries(ARRAY[1]::bigint[], ARRAY['{}']::jsonb[], now())",
        )


async def test_pooled_connections_act_as_the_writer_role_even_after_reuse(
    settings: BranchlineSettings,
) -> None:
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        pool = audit.ledger.pool
        for _ in range(3):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT current_user") == s.audit_db_writer_role
                await conn.execute("RESET ALL")  # what the pool ran on release before #12
                assert await conn.fetchval("SELECT current_user") == s.audit_db_writer_role
        async with superuser(s) as conn:
            owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'audit_ledger'"
            )
            login = await conn.fetchval(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", s.audit_db_owner_role
            )
            # Retention's trigger calls it (migration 006): owned like the tables.
            event_function_owner = await conn.fetchval(
                "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'audit_entry_event'"
            )
        assert owner == s.audit_db_owner_role
        assert event_function_owner == s.audit_db_owner_role
        assert login is False


async def test_roles_are_provisioned_idempotently_by_many_databases_at_once(
    infra: Infra, tmp_path: Any
) -> None:
    """Roles are cluster-wide: several databases (and processes) may create them together."""
    many = [make_settings(infra, tmp_path / str(i)) for i in range(4)]
    await asyncio.gather(*(prepare_database(s) for s in many))
    await asyncio.gather(*(prepare_database(s) for s in many))  # and again: nothing changes
    for s in many:
        async with audit_context(quick_settings(s)) as audit:
            assert await audit.ledger.append([event(1, event_id=uuid.uuid4())], now=T0) == 1


async def test_starting_again_takes_no_lock_that_running_processes_could_deadlock_with(
    filled: BranchlineSettings,
) -> None:
    """Every audit process prepares its database at start; once provisioned, that must not
    take the exclusive locks of ALTER ... OWNER while another process uses the ledger."""
    busy = await asyncpg.connect(filled.audit_database_url)
    try:
        reading = busy.transaction()
        await reading.start()
        await busy.execute("LOCK TABLE audit_ledger IN ACCESS SHARE MODE")
        await asyncio.wait_for(prepare_database(filled), timeout=10)
        await reading.rollback()
    finally:
        await busy.close()
