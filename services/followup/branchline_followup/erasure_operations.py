"""Composition for ``branchline privacy shred-due``: the erasure job run once, outside the
worker. Its events wait in followup's outbox for the relay of a running followup process (API
or worker), like every followup event (ADR-0001)."""

from __future__ import annotations

from datetime import datetime

from branchline_followup.adapters.clock_store import PostgresClockOffsets
from branchline_followup.adapters.legal_holds import legal_holds_from_settings
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.clock import ServiceClock
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.projector import Projection
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.shredding import (
    ErasureStatus,
    retention_rule_from_settings,
    shred_due,
)
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_shared.clock import SystemClock
from branchline_shared.crypto.keystore import open_configured_key_store
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.settings import FollowupSettings


async def shred_due_once(
    settings: FollowupSettings, *, dry_run: bool, now: datetime | None = None
) -> list[ErasureStatus]:
    """The erasure job once, as of ``now`` (default: the service's clock)."""
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    keys, key_pool = await open_configured_key_store(settings)
    try:
        ctx = FollowupContext(
            pool=pool,
            units=PostgresUnitsOfWork(pool),
            projection=Projection(policy_from_settings(settings)),
            topic=declare_topics(settings).followup_events.name,
            clock=ServiceClock(
                PostgresClockOffsets(pool), SystemClock(), dev_mode=settings.dev_mode
            ),
            keys=keys,
        )
        return await shred_due(
            ctx,
            keys,
            retention_rule_from_settings(settings),
            legal_holds_from_settings(settings),
            now=now,
            dry_run=dry_run,
        )
    finally:
        await pool.close()
        await key_pool.close()
