"""The audit checkpointer, a background task of the API and consumer processes, outlives a
connection whose session the server ended (#12, docs/reliability.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from branchline_audit.application.checkpointing import run_checkpointer
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    audit_context_on,
    event,
    quick_settings,
)
from tests.support.proxy import cuttable, end_sessions_behind

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def test_the_checkpointer_outlives_a_connection_whose_session_was_ended(
    settings: BranchlineSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ends the session of the checkpointer's pooled connection while it sits idle
    between rounds (a restart, an idle session timeout); a proxy passes the FATAL error on at
    once and holds the close until a later round signed, so the next round's query is sent in
    between. asyncpg failed it with an ``InternalClientError``, which the checkpointer did not
    count as a lost connection: the task ended for good and no checkpoint was signed again
    until the process restarted. Now the round fails as lost (logged) and a later one signs.
    The test appends and reads on a pool of its own, straight to the server."""
    caplog.set_level(logging.WARNING, logger="branchline_audit.application.checkpointing")
    target = urlsplit(settings.audit_database_url)
    # The recovery must come before the ended session's close does: the close is held until
    # it came (a fixed 5 s was outrun on a CI machine loaded to 7-11; 20 s was only a longer
    # deadline).
    async with cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        via_proxy = settings.model_copy(
            update={"audit_database_url": urlunsplit(target._replace(netloc=netloc))}
        )
        every_entry = {"audit_checkpoint_every_entries": 1}
        async with (
            audit_context(quick_settings(settings)) as direct,
            audit_context_on(quick_settings(via_proxy, **every_entry), connections=1) as (
                audit,
                pool,
            ),
        ):
            await append_in_batches(direct.ledger, [event(0)], now=T0)
            task = asyncio.create_task(run_checkpointer(audit, poll_s=0.05))
            try:

                async def until(done: Callable[[], Awaitable[bool]]) -> None:
                    async with asyncio.timeout(30):
                        while not await done():
                            assert not task.done(), task
                            await asyncio.sleep(0.05)

                async def signed(size: int) -> bool:
                    latest = await direct.checkpoints.latest()
                    return latest is not None and latest.tree_size >= size

                async def retried() -> bool:
                    return any("will retry" in r.getMessage() for r in caplog.records)

                await until(lambda: signed(1))
                with proxy.holding_closes():  # until the second signing, however late
                    # The session is ended while the test holds the pool's one connection, so
                    # no round's query is in flight then: one that was got the FATAL error as
                    # its answer and waited for the held close (in CI, passed late, counted:
                    # the stop 44 failure). The next round meets the ended session idle.
                    async with pool.acquire():
                        await end_sessions_behind(proxy, settings.audit_database_url)
                    passed = proxy.closes_passed
                    await until(retried)  # a round met the ended session
                    await append_in_batches(direct.ledger, [event(1)], now=T0)
                    await until(lambda: signed(2))
                    assert proxy.closes_passed == passed  # all before the ended one's close came
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
