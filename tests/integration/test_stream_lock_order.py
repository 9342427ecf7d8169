"""Every writer takes its streams in one pass over their sorted ids (#12; docs/intake.md,
"Lock order"): while it waits for a stream it holds none that sorts after it, so writers never
wait on each other in a cycle. Before, a writer created its new streams first and locked the
existing ones after: it held a new stream while waiting for an older one, and with the
remembered write (which takes both in one sorted pass) that closed a cycle, seen as a rare
``deadlock detected`` in the concurrent refusal-lock test. A writer of that older release
can still meet this one during a rolling upgrade: the server breaks the cycle and the
transaction it rolled back runs again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from branchline_intake.application.outcomes import Accepted
from branchline_intake.application.submit import submit_events
from branchline_shared.eventstore.postgres import _SHARE_SQL, PostgresEventStore
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_intake_refusal_locks import (
    BRANCH,
    process,
    registration,
    waits_for_a_lock,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def conns(
    app: FastAPI, settings: BranchlineSettings
) -> AsyncIterator[list[asyncpg.Connection[Any]]]:
    """Three connections of the test's own (a holder, a probe, a watcher) to the intake
    database the app migrated."""
    opened = [await asyncpg.connect(settings.intake_database_url) for _ in range(3)]
    try:
        yield opened
    finally:
        for conn in opened:
            await conn.close()


@pytest.mark.parametrize("path", ["unit of work", "group"])
async def test_a_writer_waiting_for_a_stream_holds_none_after_it(
    settings: BranchlineSettings, conns: list[asyncpg.Connection[Any]], path: str
) -> None:
    """A writer of an existing stream and a new one that sorts after it, the existing one
    held by another transaction: while the writer waits for it, the new stream is not
    created (nor held) yet, so a third transaction creates it at once. Creating new streams
    first held it, and the third waited (its lock timeout fails this test)."""
    holder, probe, watcher = conns
    run = uuid.uuid4().hex[:6]
    existing, new = f"client-{run}-a", f"client-{run}-b"
    await holder.execute("INSERT INTO es_streams (stream_id) VALUES ($1)", existing)
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    store = PostgresEventStore(pool)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()

        async def take() -> dict[str, int]:
            if path == "group":
                async with store.shared_transaction() as shared:
                    await shared.lock_streams([new, existing])
                    return dict(shared.held_versions)
            async with store.unit_of_work() as uow:
                return await uow.lock_streams([new, existing])

        async with holder.transaction():
            await holder.execute("SELECT FROM es_streams WHERE stream_id = $1 FOR UPDATE", existing)
            task = asyncio.create_task(take())
            await asyncio.wait_for(waits_for_a_lock(watcher, pid), 20)
            await probe.execute("SET lock_timeout = '3s'")
            await probe.execute(
                "INSERT INTO es_streams (stream_id) VALUES ($1) ON CONFLICT DO NOTHING", new
            )
        assert await asyncio.wait_for(task, 20) == {existing: 0, new: 0}
    finally:
        await pool.close()


async def test_a_group_takes_a_read_stream_between_its_written_ones_in_its_place(
    settings: BranchlineSettings, conns: list[asyncpg.Connection[Any]]
) -> None:
    """A group writing two streams and reading one that sorts between them (the group's
    first statement takes the written ones in one pass only when every read stream sorts
    after them): waiting for the read stream, the group does not hold the written stream
    after it."""
    holder, probe, watcher = conns
    run = uuid.uuid4().hex[:6]
    first, read, last = f"client-{run}-a", f"client-{run}-b", f"client-{run}-c"
    await holder.execute(
        "INSERT INTO es_streams (stream_id) SELECT unnest($1::text[])", [first, read, last]
    )
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    store = PostgresEventStore(pool)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()

        async def take() -> tuple[dict[str, int], set[str]]:
            async with store.shared_transaction() as shared:
                await shared.lock_streams([last, first], shared=[read])
                return dict(shared.held_versions), set(shared.held_shared)

        async with holder.transaction():
            await holder.execute("SELECT FROM es_streams WHERE stream_id = $1 FOR UPDATE", read)
            task = asyncio.create_task(take())
            await asyncio.wait_for(waits_for_a_lock(watcher, pid), 20)
            async with probe.transaction():  # free: NOWAIT raises if the group held it
                await probe.execute(
                    "SELECT FROM es_streams WHERE stream_id = $1 FOR UPDATE NOWAIT", last
                )
        assert await asyncio.wait_for(task, 20) == ({first: 0, last: 0}, {read})
    finally:
        await pool.close()


@pytest.mark.parametrize("path", ["batch", "group commit"])
async def test_a_cycle_with_a_writer_of_the_older_release_is_broken_and_run_again(
    app: FastAPI,
    settings: BranchlineSettings,
    conns: list[asyncpg.Connection[Any]],
    path: str,
) -> None:
    """A writer of the release before (new streams created first, existing ones locked
    after) has created this writer's new stream, and then waits for its existing one, which
    this writer holds while it waits for the new one: a cycle. The server breaks it by
    rolling back this writer (which waited first); nothing was answered, so the batch (or
    the group) runs again and is answered when the old writer is done."""
    old, _, watcher = conns
    proc = await process(app, settings, old_order=False, pool_size=1)
    run = uuid.uuid4().hex[:6]
    first, second = f"C-{run}-1", f"C-{run}-2"
    streams = [f"client-{first}", f"client-{second}"]
    try:
        # the first client's stream exists (no events): this writer will lock it
        await old.execute("INSERT INTO es_streams (stream_id) VALUES ($1)", streams[0])
        async with proc.pool.acquire() as conn:
            pid = conn.get_server_pid()
        # The old writer must not be the one the server rolls back: its deadlock check runs
        # long after this writer's (a superuser setting; the suite connects as one).
        await old.execute("SET deadlock_timeout = '60s'")
        items = [registration(first), registration(second)]
        await old.execute("BEGIN")
        await old.execute(  # the older release's first statement: a new stream, held
            "INSERT INTO es_streams (stream_id) VALUES ($1) ON CONFLICT DO NOTHING", streams[1]
        )
        # One request of both items (a group of one caller: its guess that both streams are
        # new fails at once on the existing one, and the group takes them the ordinary way).
        if path == "batch":
            task = asyncio.create_task(submit_events(proc.ctx, items, submitted_by=BRANCH))
        else:
            task = asyncio.create_task(proc.committer.submit(items, submitted_by=BRANCH))
        await asyncio.wait_for(waits_for_a_lock(watcher, pid), 20)
        # its second statement: the existing stream, which this writer holds
        await asyncio.wait_for(
            old.execute("SELECT FROM es_streams WHERE stream_id = $1 FOR UPDATE", streams[0]),
            20,
        )
        await old.execute("ROLLBACK")  # the old writer gives up: its new stream is gone
        outcomes = await asyncio.wait_for(task, 20)
    finally:
        await proc.pool.close()
    assert [type(o) for o in outcomes] == [Accepted, Accepted], outcomes


async def test_read_streams_are_locked_in_the_byte_order_writers_sort_in(
    settings: BranchlineSettings, conns: list[asyncpg.Connection[Any]]
) -> None:
    """Writers sort stream ids in Python (code points: UTF-8's byte order) and take them in
    that order; the read streams' FOR SHARE statement sorts in the "C" collation, not the
    database's (one created with en_US or ICU orders ``refusals-x`` and ``refusals/x``, or
    ``a-b`` and ``ab``, otherwise), so its locks follow the same order."""
    plan = "\n".join(
        r[0] for r in await conns[0].fetch("EXPLAIN (VERBOSE) " + _SHARE_SQL, ["a-b", "ab"])
    )
    assert 'COLLATE "C"' in plan, plan
