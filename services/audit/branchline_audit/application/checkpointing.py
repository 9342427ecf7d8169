"""Signed checkpoints: every N entries or T seconds, and on demand for proofs and exports."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from branchline_audit.application.context import AuditContext
from branchline_audit.application.signed_leaves import unsigned_latest
from branchline_audit.domain.note import sign_checkpoint
from branchline_audit.domain.verification import AlteredEntry, StoredCheckpoint
from branchline_shared.postgres.faults import session_ended_unread

log = logging.getLogger(__name__)

CHECKPOINT_REFUSED = Gauge(
    "branchline_audit_checkpoint_refused_position",
    "The ledger position the checkpointer's signing is refused at (the ledger contradicts "
    "the latest signed checkpoint, D-11); 0 while it signs",
)
CHECKPOINT_REFUSED_ROUNDS = Counter(
    "branchline_audit_checkpoint_refused_rounds_total",
    "Checkpointer rounds whose signing was refused over a rewritten ledger (D-11)",
)


async def checkpoint_now(audit: AuditContext) -> StoredCheckpoint:
    """A signed checkpoint over every entry committed so far (the existing one if current);
    :class:`UnsignedHistory` (D-11) when the latest signed checkpoint's last leaf is not the
    stored hash at its size: none is signed over a rewrite of what one signed (Round 28)."""
    unsigned = await unsigned_latest(audit)
    if unsigned is not None:
        raise unsigned

    async def range_root(conn: Any, size: int) -> bytes:
        hasher = await audit.ledger.range_hasher([(0, size)], conn=conn)
        return hasher(0, size)

    return await audit.checkpoints.create(
        lambda size, root: sign_checkpoint(audit.signer, audit.origin, size, root),
        range_root,
        now=audit.clock.now(),
    )


async def checkpoint_if_due(audit: AuditContext) -> StoredCheckpoint | None:
    """Sign when ``checkpoint_every`` entries are unsigned, or the oldest unsigned entry is
    ``checkpoint_interval_s`` old."""
    signed, size, first_unsigned = await audit.checkpoints.unsigned_since()
    if size <= signed:
        return None
    waited = (
        (audit.clock.now() - first_unsigned).total_seconds() if first_unsigned is not None else 0
    )
    if size - signed >= audit.checkpoint_every or waited >= audit.checkpoint_interval_s:
        return await checkpoint_now(audit)
    return None


async def latest_covering(audit: AuditContext, position: int) -> StoredCheckpoint:
    """The latest checkpoint, signed at once if it does not yet cover ``position``."""
    latest = await audit.checkpoints.latest()
    if latest is not None and latest.tree_size >= position:
        return latest
    return await checkpoint_now(audit)


_RETRIED = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


async def run_checkpointer(audit: AuditContext, *, poll_s: float = 1.0) -> None:
    """Background task (API and consumer processes): sign checkpoints when due, for ever.

    While the ledger contradicts the latest signed checkpoint (D-11) every round is refused:
    the refusal is logged at error level once, again only when it changes (another position
    or reason), and its clearing once at warning level; the metrics
    ``branchline_audit_checkpoint_refused_position`` (the position, 0 while it signs) and
    ``branchline_audit_checkpoint_refused_rounds_total`` say it every round (#12)."""
    poll = min(poll_s, audit.checkpoint_interval_s)
    refused: str | None = None
    """The detail of the refusal last logged, None while rounds sign."""
    while True:
        try:
            await checkpoint_if_due(audit)
        except _RETRIED as error:
            log.warning("checkpoint failed; will retry", extra={"error": repr(error)})
        except AlteredEntry as error:
            # The ledger contradicts the latest signed checkpoint (UnsignedHistory): nothing
            # is signed over it; said once per contradiction, counted every round (D-11).
            CHECKPOINT_REFUSED_ROUNDS.inc()
            CHECKPOINT_REFUSED.set(error.position)
            if error.detail != refused:
                log.error("checkpoint refused: %s", error.detail)
                refused = error.detail
        except asyncpg.InternalClientError as error:
            # A connection whose session the server ended, its error read and its close not
            # yet (postgres/faults.py): lost like any other, tried again next round (#12).
            # Any other InternalClientError is asyncpg's own bug and ends the task, seen.
            if not session_ended_unread(error):
                raise
            log.warning("checkpoint failed; will retry", extra={"error": repr(error)})
        else:
            if refused is not None:
                log.warning("checkpoint no longer refused (was: %s)", refused)
                refused = None
                CHECKPOINT_REFUSED.set(0)
        await asyncio.sleep(poll)
