"""Followup's read-model pool skips asyncpg's reset query on release (#12: a round trip after
every worker batch, relay read and mark, timer round and API request), which is safe only if
no connection of the pool ever carries session state back: the relay's session-level lock and
its LISTEN live on a connection of their own."""

from __future__ import annotations

import asyncio
import time

import pytest

from branchline_followup.bootstrap import followup_runtime
from branchline_shared.eventstore.relay import RELAY_LOCK_KEY
from branchline_shared.postgres.pool import connect_one
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOLDERS = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = $1 AND objid = $2 AND objsubid = 1"
)
LOCK_KEY = (RELAY_LOCK_KEY >> 32, RELAY_LOCK_KEY & 0xFFFFFFFF)


async def test_the_pool_sends_no_reset_and_the_relay_lock_is_on_no_pool_connection(
    settings: BranchlineSettings,
) -> None:
    async with followup_runtime(settings) as runtime:
        watcher = await connect_one(settings.followup_database_url)
        try:
            deadline = time.monotonic() + 30
            while not (holders := [r["pid"] for r in await watcher.fetch(HOLDERS, *LOCK_KEY)]):
                assert time.monotonic() < deadline, "the relay never took its lock"
                await asyncio.sleep(0.05)
            async with runtime.pool.acquire() as one, runtime.pool.acquire() as two:
                pooled = {await c.fetchval("SELECT pg_backend_pid()") for c in (one, two)}
            assert not pooled & set(holders)  # the lock's session is none of the pool's
            # The last statement each released connection ran is the test's (or the relay's,
            # which may have taken one since), never the reset query.
            last = [
                r["query"]
                for r in await watcher.fetch(
                    "SELECT query FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pooled)
                )
            ]
            assert len(last) == 2
            assert not [q for q in last if "pg_advisory_unlock_all" in q], last
        finally:
            await watcher.close()
