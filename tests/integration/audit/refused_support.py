"""What the refused checkpointer round's tests share (#12): a ledger signed at every size with one
entry more unsigned, a rewrite of its hashes from a position on, and a one-connection pool whose
statements are logged, so a round's statements can be counted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from branchline_audit.adapters.database import open_role_pool, prepare_database
from branchline_audit.application.checkpointing import checkpoint_if_due, checkpoint_now
from branchline_audit.application.context import AuditContext
from branchline_audit.bootstrap import audit_context as built_context
from branchline_audit.domain.verification import UnsignedHistory
from branchline_shared.clock import FixedClock
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    behind_the_ledgers_back,
    event,
    quick_settings,
)

SIGNED = 64
"""Checkpoints signed at every size from 1 to SIGNED; one entry more stays unsigned (due)."""
REWRITTEN = 40
"""Every entry hash from this position on is replaced (a re-chaining rewrite's hashes; the
stored tree left as it was, so every signed leaf from here on fails its proof)."""


@contextlib.asynccontextmanager
async def counted_contexts(
    settings: BranchlineSettings,
) -> AsyncIterator[tuple[Callable[[], AuditContext], list[Any]]]:
    """A maker of fresh process contexts (nothing proven, kept or opened) on one
    one-connection pool whose statements are logged, its round due at every unsigned entry."""
    settings = quick_settings(settings, audit_checkpoint_every_entries=1)
    await prepare_database(settings)
    pool = await open_role_pool(settings, settings.audit_db_writer_role, max_size=1)
    logged: list[Any] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(logged.append)
        yield (lambda: built_context(settings, pool, FixedClock(T0))), logged
    finally:
        await pool.close()


async def signed(audit: AuditContext) -> None:
    for n in range(SIGNED):
        await append_in_batches(audit.ledger, [event(n)], now=T0)
        await checkpoint_now(audit)
    await append_in_batches(audit.ledger, [event(SIGNED)], now=T0)


async def rewrite_from(settings: BranchlineSettings, position: int = REWRITTEN) -> None:
    await behind_the_ledgers_back(
        settings, "UPDATE audit_ledger SET hash = sha256(hash) WHERE position >= $1", position
    )


async def signed_and_rewritten(audit: AuditContext, settings: BranchlineSettings) -> None:
    await signed(audit)
    await rewrite_from(settings)


async def refused(audit: AuditContext) -> UnsignedHistory:
    with pytest.raises(UnsignedHistory) as refusal:
        await checkpoint_if_due(audit)
    return refusal.value
