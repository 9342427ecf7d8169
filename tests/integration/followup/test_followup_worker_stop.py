"""A followup worker's stop is bounded (``followup_worker_stop_timeout_s``): it finishes the
batch in hand and commits it; a batch that never finishes is cancelled past the bound,
uncommitted, and redelivered to the next start, where its ids decide (ADR-0003). Neither an
in-process worker (tests, tools) nor a SIGTERMed worker process is kept alive by it."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.entrypoints import worker
from branchline_followup.entrypoints.worker import worker_group
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc, produce_events, running_worker
from tests.integration.test_graceful_shutdown import committed_and_end
from tests.support.processes import settings_env
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(120)]


async def test_a_stop_finishes_the_batch_in_hand_and_commits_it(
    settings: BranchlineSettings,
    db: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    applying = worker.handle_batch

    async def held_back(*args: Any, **kwargs: Any) -> None:
        entered.set()
        await release.wait()
        await applying(*args, **kwargs)

    monkeypatch.setattr(worker, "handle_batch", held_back)
    history = History()
    history.registered("C-STOP-1", now_utc() - timedelta(days=1))
    async with running_worker(settings):
        await produce_events(settings, history.events)
        await asyncio.wait_for(entered.wait(), 60)
        asyncio.get_running_loop().call_later(0.5, release.set)  # while the stop waits
    # the block's end stopped the worker: the batch in hand was applied, then committed
    assert await db.fetchval("SELECT count(*) FROM fu_clients WHERE client_id = 'C-STOP-1'")
    committed, end = await committed_and_end(settings, worker_group(settings))
    assert committed == end


async def test_a_batch_that_never_finishes_is_cancelled_past_the_bound_and_redelivered(
    settings: BranchlineSettings,
    db: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bounded = settings.model_copy(update={"followup_worker_stop_timeout_s": 1.0})
    entered = asyncio.Event()
    applying = worker.handle_batch

    async def never_finishes(*args: Any, **kwargs: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    history = History()
    history.registered("C-STOP-2", now_utc() - timedelta(days=1))
    with monkeypatch.context() as patched:
        patched.setattr(worker, "handle_batch", never_finishes)
        async with running_worker(bounded):
            await produce_events(settings, history.events)
            await asyncio.wait_for(entered.wait(), 60)
            stopping = time.monotonic()
    assert time.monotonic() - stopping < 15  # the bound, the relay's drain, the pools
    committed, end = await committed_and_end(settings, worker_group(settings))
    assert committed < end  # nothing of the cancelled batch was committed
    assert worker.handle_batch is applying
    async with running_worker(settings):  # the next start is handed it again
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM fu_clients WHERE client_id = 'C-STOP-2'"),
            within=60,
        )


LOCKED_BOUND_S = 30.0
"""The stop's bound in the locked-batch test (the default ``followup_worker_stop_timeout_s``):
what the old stop took, the batch's insert waiting on the lock until it."""
LOCKED_STOP_S = 12.0
"""What that stop may take: the stop's patience (``consuming.STOP_PATIENCE_S``, 2 s), the
statement's cancel, the relay's drain and the pools' closes (~2.5 s measured), widened for a
loaded machine; far under the bound."""


async def test_a_batch_waiting_on_a_lock_is_cancelled_after_the_stops_patience_and_redelivered(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    # Another session holds a lock the batch's transaction needs (its insert into
    # fu_applied_events): the stop cancels the batch after its patience, not at its bound
    # (#12, Round 35); rolled back and not committed, it is applied by the next start.
    bounded = settings.model_copy(update={"followup_worker_stop_timeout_s": LOCKED_BOUND_S})
    history = History()
    history.registered("C-STOP-LOCK", now_utc() - timedelta(days=1))
    holder = await asyncpg.connect(settings.followup_database_url)
    try:
        async with running_worker(bounded):
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("LOCK TABLE fu_applied_events IN SHARE MODE")
            await produce_events(settings, history.events)

            async def the_batch_waits() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND pid <> $1",
                        holder.get_server_pid(),
                    )
                )

            await eventually(the_batch_waits, within=60, interval=0.05)
            stopping = time.monotonic()
        took = time.monotonic() - stopping
        await transaction.rollback()
    finally:
        await holder.close()
    assert not await db.fetchval(
        "SELECT count(*) FROM fu_clients WHERE client_id = 'C-STOP-LOCK'"
    )  # rolled back
    committed, end = await committed_and_end(settings, worker_group(settings))
    assert committed < end  # not committed: redelivered
    async with running_worker(settings):  # the next start is handed it again
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM fu_clients WHERE client_id = 'C-STOP-LOCK'"),
            within=60,
        )
    assert took < LOCKED_STOP_S, f"the stop took {took:.1f} s (bound {LOCKED_BOUND_S} s)"


@pytest.mark.parametrize("how", ["batch", "leave"])
async def test_a_worker_process_whose_stop_never_returns_still_exits(
    settings: BranchlineSettings, how: str
) -> None:
    # "batch": the batch in hand never finishes: it is cancelled after the stop's patience
    # (2 s, Round 35), within the bound; "leave": the consumer's own stop (leaving its group)
    # never returns: the stop is cancelled past its bound.
    settings = settings.model_copy(update={"followup_worker_stop_timeout_s": 4.0})
    env = settings_env(settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.hung_stop_worker",
        how,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()[-3000:]
    assert out.decode().split() == ["started", "stopped"], err.decode()[-3000:]
    if how == "batch":
        assert b"the stop cancelled the batch in hand" in err
    else:
        assert b"did not stop in time" in err
