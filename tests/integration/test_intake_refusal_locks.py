"""A refusal stream is locked only when a refusal is written to it (#12; docs/intake.md,
"Lock order"): outcomes are those of the old order, a refused item never aborts the others,
and writers that take the old order (an intake process not yet upgraded) and the new one
never deadlock, even where the old order takes a refusal stream before its subject's."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.outcomes import Accepted, Outcome, Refused
from branchline_intake.application.submit import IntakeContext, submit_events
from branchline_intake.domain import RecordedDecider
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.support.events import registration_body
from tests.support.examples import example_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BRANCH = Actor(id="branch-7", role="branch_system")


def registration(client_id: str, *, future: bool = False) -> SubmittedEvent:
    """A client's registration; ``future``: dated an hour ahead, which D-05b refuses."""
    at = datetime.now(UTC) + (timedelta(hours=1) if future else timedelta(0))
    return SubmittedEvent.model_validate(registration_body(client_id, None, at))


def training(staff_id: str, *, future: bool = False) -> SubmittedEvent:
    """A member of staff's training record (their refusal stream, ``refusals/staff-...``,
    sorts *before* their own stream: the old order locks it first)."""
    at = datetime.now(UTC) + (timedelta(hours=1) if future else timedelta(0))
    return SubmittedEvent.model_validate(
        {
            "type": "staff.training_recorded",
            "occurred_at": at.isoformat(),
            "staff_id": staff_id,
            "actor": {"id": "admin-1", "role": "admin"},
            "data": example_data("staff.training_recorded"),
        }
    )


@dataclasses.dataclass
class Process:
    """What one intake process has of its own: a pool, a decider's memory, a group commit."""

    ctx: IntakeContext
    committer: GroupCommitter
    pool: asyncpg.Pool[Any]


async def process(
    app: FastAPI, settings: BranchlineSettings, *, old_order: bool, pool_size: int = 4
) -> Process:
    """``old_order``: every refusal stream locked up front with its subject's (intake before
    #12; the order of the run after StreamsBusy)."""
    base: IntakeContext = app.state.intake
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=pool_size)
    decider = RecordedDecider()
    ctx = dataclasses.replace(
        base,
        store=TailLoadingStore(PostgresEventStore(pool), decider),
        decider=decider,
        refusal_locks_first=old_order,
    )
    return Process(ctx, GroupCommitter(ctx, writers=2), pool)


async def stream_rows(settings: BranchlineSettings, stream_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, version FROM es_streams WHERE stream_id = ANY($1::text[])",
            stream_ids,
        )
    finally:
        await conn.close()
    return {r["stream_id"]: r["version"] for r in rows}


async def stream_versions(settings: BranchlineSettings, prefix: str) -> dict[str, list[int]]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, stream_version FROM es_events WHERE stream_id LIKE $1 || '%' "
            "ORDER BY stream_id, stream_version",
            prefix,
        )
    finally:
        await conn.close()
    versions: dict[str, list[int]] = {}
    for r in rows:
        versions.setdefault(r["stream_id"], []).append(r["stream_version"])
    return versions


def shape(outcome: Outcome, run: str) -> tuple[Any, ...]:
    """An outcome without what differs between two runs (ids, positions, the run's prefix)."""
    if isinstance(outcome, Accepted):
        p = outcome.position
        return ("accepted", p.stream_id.replace(run, "*"), p.stream_version, outcome.duplicate)
    assert isinstance(outcome, Refused)
    return ("refused", outcome.reason, outcome.rule)


async def test_a_batch_that_refuses_nothing_locks_no_refusal_stream(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    ctx: IntakeContext = app.state.intake
    committer: GroupCommitter = app.state.group_commit
    run = uuid.uuid4().hex[:6]
    batch = [registration(f"C-{run}-{i}") for i in range(5)]
    outcomes = await asyncio.wait_for(submit_events(ctx, batch, submitted_by=BRANCH), 30)
    single = await asyncio.wait_for(
        committer.submit([registration(f"C-{run}-g")], submitted_by=BRANCH), 30
    )
    assert all(isinstance(o, Accepted) for o in [*outcomes, *single])
    clients = [f"C-{run}-{i}" for i in range(5)] + [f"C-{run}-g"]
    rows = await stream_rows(
        settings, [f"client-{c}" for c in clients] + [f"refusals-{c}" for c in clients]
    )
    assert set(rows) == {f"client-{c}" for c in clients}  # no refusal stream row, no lock


@pytest.mark.parametrize("path", ["batch", "group commit"])
async def test_outcomes_and_refusals_are_those_of_the_old_order(
    app: FastAPI, settings: BranchlineSettings, path: str
) -> None:
    """The same submissions, each run twice (the first refusal of a subject finds no refusal
    stream yet, the second finds it), with refusal streams locked up front (the old order)
    and only where written: the same answers, and the same refusal streams stored."""
    stored: dict[bool, tuple[list[tuple[Any, ...]], dict[str, list[int]]]] = {}
    for old_order in (True, False):
        proc = await process(app, settings, old_order=old_order)
        run = uuid.uuid4().hex[:6]
        items = [
            registration(f"C-{run}-1"),
            registration(f"C-{run}-2", future=True),  # D-05b
            registration(f"C-{run}-3"),
            registration(f"C-{run}-1"),  # D-09: registered twice
            training(f"S-{run}-1", future=True),  # D-05b, on refusals/staff-...
            training(f"S-{run}-2"),
            registration(f"C-{run}-4"),
        ]
        shapes: list[tuple[Any, ...]] = []
        try:
            for _ in range(2):
                if path == "batch":
                    outcomes = await asyncio.wait_for(
                        submit_events(proc.ctx, items, submitted_by=BRANCH), 30
                    )
                else:
                    answers = await asyncio.wait_for(
                        asyncio.gather(
                            *(proc.committer.submit([i], submitted_by=BRANCH) for i in items)
                        ),
                        30,
                    )
                    outcomes = [a[0] for a in answers]
                shapes += [shape(o, run) for o in outcomes]
        finally:
            await proc.pool.close()
        versions = {
            stream.replace(run, "*"): v
            for prefix in ("refusals-C-", "refusals/staff-S-")
            for stream, v in (await stream_versions(settings, f"{prefix}{run}")).items()
        }
        stored[old_order] = (shapes, versions)
    assert stored[False] == stored[True]
    shapes, versions = stored[False]
    expected = ["accepted", "refused", "accepted", "refused", "refused", "accepted", "accepted"]
    assert [s[0] for s in shapes[:7]] == expected
    assert versions == {
        "refusals-C-*-1": [1, 2, 3],  # registered twice in the first run, thrice after
        "refusals-C-*-2": [1, 2],  # each run's future-dated registration is a new event
        "refusals-C-*-3": [1],  # registered twice: the second run's registration
        "refusals-C-*-4": [1],
        "refusals/staff-S-*-1": [1, 2],
    }


async def waits_for_a_lock(conn: asyncpg.Connection[Any], pid: int) -> None:
    """Until the backend ``pid`` waits for a lock (bounded by the caller's timeout)."""
    query = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)"
    while True:
        if await conn.fetchval(query, pid):
            return
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("path", ["batch", "group commit"])
async def test_an_old_order_writer_that_took_the_refusal_stream_first_is_not_deadlocked(
    app: FastAPI, settings: BranchlineSettings, path: str
) -> None:
    """A writer in the old order has created the client's refusal stream (its first statement
    creates every stream it will lock) and then locks the client's stream. This writer, which
    holds the client's stream when it meets the refusal, does not wait for the refusal stream
    (NOWAIT): it rolls back and runs again with its refusal streams in the one sorted pass.
    That pass takes the client's stream and then waits for the refusal stream the old writer
    created, while the old writer waits for the client's stream: a cycle between the two
    releases' orders (docs/intake.md, "Lock order": the previous release's two statements can
    close one with this one during a rolling upgrade), which the server breaks after
    ``deadlock_timeout``. This writer must be the one rolled back and run again, and the old
    writer goes through. The server rolls back the transaction whose own deadlock check runs
    first; the old writer's connection checks later (a longer ``deadlock_timeout``), so the
    choice is not left to two 1 s timers on a loaded machine (it failed the old writer 3 times
    in 22 runs)."""
    proc = await process(app, settings, old_order=False, pool_size=1)
    label = {"path": "batch" if path == "batch" else "group"}
    reruns = REGISTRY.get_sample_value("branchline_intake_refusal_lock_reruns_total", label) or 0
    cycles = REGISTRY.get_sample_value("branchline_intake_lock_cycle_reruns_total", label) or 0
    run = uuid.uuid4().hex[:6]
    client = f"C-{run}"
    old = await asyncpg.connect(
        settings.intake_database_url, server_settings={"deadlock_timeout": "30s"}
    )
    watcher = await asyncpg.connect(settings.intake_database_url)
    try:
        (first,) = await submit_events(proc.ctx, [registration(client)], submitted_by=BRANCH)
        assert isinstance(first, Accepted)
        async with proc.pool.acquire() as conn:
            pid = conn.get_server_pid()
        streams = [f"client-{client}", f"refusals-{client}"]
        async with old.transaction():
            # The old order's first statement: the refusal stream is new, and held.
            await old.execute(
                "INSERT INTO es_streams (stream_id) SELECT unnest($1::text[]) "
                "ON CONFLICT DO NOTHING",
                streams,
            )
            twice = registration(client)  # D-09: this writer records a refusal
            if path == "batch":
                task = asyncio.create_task(submit_events(proc.ctx, [twice], submitted_by=BRANCH))
            else:
                task = asyncio.create_task(proc.committer.submit([twice], submitted_by=BRANCH))
            await asyncio.wait_for(waits_for_a_lock(watcher, pid), 30)
            # The old order's locks: the client's stream, then its refusal stream. Had this
            # writer kept the client's stream while waiting for the refusal stream, this would
            # wait for it, and it for this: a deadlock.
            locked = await asyncio.wait_for(
                old.fetch(
                    "SELECT stream_id FROM es_streams WHERE stream_id = ANY($1::text[]) "
                    "ORDER BY stream_id FOR UPDATE",
                    streams,
                ),
                30,
            )
            assert [r["stream_id"] for r in locked] == streams
        (refused,) = await asyncio.wait_for(task, 30)
    finally:
        await old.close()
        await watcher.close()
        await proc.pool.close()
    assert isinstance(refused, Refused)
    assert refused.rule == "D-09"
    # run again once, in the old order (visible to operators during a rolling upgrade)
    after = REGISTRY.get_sample_value("branchline_intake_refusal_lock_reruns_total", label)
    assert after == reruns + 1
    # the cycle, broken by rolling this writer back: once, or twice on a loaded machine. A row
    # lock is not handed to the writer waiting for it when its holder rolls back: the waiter
    # takes it when it next runs, so the rerun can take the client's stream again first and
    # close the same cycle once more (seen once in CI at load 6, Round 26). Never more than
    # the attempts allow, and never the old writer rolled back (its transaction went through).
    broken = REGISTRY.get_sample_value("branchline_intake_lock_cycle_reruns_total", label)
    assert broken is not None
    assert cycles + 1 <= broken <= cycles + 2
    assert await stream_versions(settings, f"refusals-{client}") == {f"refusals-{client}": [1]}


@pytest.mark.parametrize("path", ["batch", "group commit"])
async def test_an_old_order_writer_holding_a_staff_refusal_stream_is_not_deadlocked(
    app: FastAPI, settings: BranchlineSettings, path: str
) -> None:
    """A member of staff's refusal stream sorts before the member's own stream, so a writer in
    the old order locks it first, then waits for the member's stream, which this writer holds
    while it records a refusal: the refusal stream is locked, not missing. This writer does not
    wait for it (NOWAIT): it rolls back and runs again in the global order, behind the old
    writer, which goes through."""
    proc = await process(app, settings, old_order=False, pool_size=1)
    label = {"path": "batch" if path == "batch" else "group"}
    run = uuid.uuid4().hex[:6]
    member = f"S-{run}"
    streams = [f"refusals/staff-{member}", f"staff-{member}"]  # the old order: sorted
    old = await asyncpg.connect(settings.intake_database_url)
    watcher = await asyncpg.connect(settings.intake_database_url)
    try:
        # the member's first refusal creates the refusal stream (and runs again once)
        (first,) = await submit_events(
            proc.ctx, [training(member, future=True)], submitted_by=BRANCH
        )
        assert isinstance(first, Refused)
        reruns = REGISTRY.get_sample_value("branchline_intake_refusal_lock_reruns_total", label)
        async with proc.pool.acquire() as conn:
            pid = conn.get_server_pid()
        async with old.transaction():
            await old.execute(
                "INSERT INTO es_streams (stream_id) SELECT unnest($1::text[]) "
                "ON CONFLICT DO NOTHING",
                streams,
            )
            await old.fetch(  # the old order's first lock: the refusal stream
                "SELECT stream_id FROM es_streams WHERE stream_id = $1 FOR UPDATE", streams[0]
            )
            dated_ahead = training(member, future=True)  # D-05b: a refusal to record
            if path == "batch":
                task = asyncio.create_task(
                    submit_events(proc.ctx, [dated_ahead], submitted_by=BRANCH)
                )
            else:
                task = asyncio.create_task(
                    proc.committer.submit([dated_ahead], submitted_by=BRANCH)
                )
            await asyncio.wait_for(waits_for_a_lock(watcher, pid), 30)
            # Its next lock, the member's stream: free, since this writer did not keep it
            # while waiting for the refusal stream (else each would wait for the other).
            await asyncio.wait_for(
                old.fetch(
                    "SELECT stream_id FROM es_streams WHERE stream_id = $1 FOR UPDATE",
                    streams[1],
                ),
                30,
            )
        (refused,) = await asyncio.wait_for(task, 30)
    finally:
        await old.close()
        await watcher.close()
        await proc.pool.close()
    assert isinstance(refused, Refused)
    assert refused.rule == "D-05b"
    after = REGISTRY.get_sample_value("branchline_intake_refusal_lock_reruns_total", label)
    assert after == (reruns or 0) + 1
    assert await stream_versions(settings, streams[0]) == {streams[0]: [1, 2]}


async def test_concurrent_batches_of_old_and_new_order_writers_with_refusals(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Two intake "processes" (pools, deciders and group commits of their own), one taking the
    old order, one the new, write concurrent batches and single events over the same clients
    and members of staff, about half of them refused (registered twice, dated ahead): every
    request is answered (no deadlock: it would fail a transaction), every refused item is
    refused and recorded once, on a refusal stream without gaps, and the others are stored."""
    old = await process(app, settings, old_order=True)
    new = await process(app, settings, old_order=False)
    run = uuid.uuid4().hex[:6]
    clients = [f"C-{run}-{i}" for i in range(6)]
    staff = [f"S-{run}-{i}" for i in range(3)]
    rng = random.Random(run)

    def items(size: int) -> list[SubmittedEvent]:
        chosen: list[SubmittedEvent] = []
        for _ in range(size):
            if rng.random() < 0.6:
                chosen.append(registration(rng.choice(clients), future=rng.random() < 0.3))
            else:
                chosen.append(training(rng.choice(staff), future=rng.random() < 0.5))
        return chosen

    async def send(proc: Process, batch: bool) -> list[tuple[SubmittedEvent, Outcome]]:
        sent = items(8 if batch else 1)
        if batch:
            outcomes = await submit_events(proc.ctx, sent, submitted_by=BRANCH)
        else:
            outcomes = await proc.committer.submit(sent, submitted_by=BRANCH)
        return list(zip(sent, outcomes, strict=True))

    try:
        answered = await asyncio.wait_for(
            asyncio.gather(
                *(send(p, batch) for _ in range(6) for p in (old, new) for batch in (True, False))
            ),
            90,
        )
    finally:
        await old.pool.close()
        await new.pool.close()
    results = [pair for request in answered for pair in request]
    refused = Counter[str]()
    accepted = Counter[str]()
    for item, outcome in results:
        subject = item.client_id or item.staff_id
        assert subject is not None
        if isinstance(outcome, Refused):
            assert outcome.rule in {"D-05b", "D-09"}, outcome
            refused[subject] += 1
        else:
            assert isinstance(outcome, Accepted), outcome
            accepted[subject] += 1
    assert sum(refused.values()) > 10  # the refusal streams were contended
    for client in clients:
        assert accepted[client] <= 1  # registered once, whoever came first
    refusal_streams = {
        **(await stream_versions(settings, f"refusals-C-{run}")),
        **(await stream_versions(settings, f"refusals/staff-S-{run}")),
    }
    for subject in [*clients, *staff]:
        stream = f"refusals-{subject}" if subject.startswith("C-") else f"refusals/staff-{subject}"
        assert refusal_streams.get(stream, []) == list(range(1, refused[subject] + 1))
