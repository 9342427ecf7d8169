"""A statement the database cancels (57014, ``statement_timeout``) for one event only no
longer holds the worker for ever (#12, docs/reliability.md "A statement cancelled again and
again"): the batch falls back to one unit per event, and the event whose statement is
cancelled on every attempt alone, while the others of its batch are applied, is
dead-lettered with the reason (``branchline dlq replay`` applies it later). When nothing else
goes through the cancellations may be everyone's: the event is retried, in sight
(``branchline_consumer_attempts_in_a_row``), never dead-lettered.

The worker's pool runs with a short ``statement_timeout``; the one client's statements wait on
its advisory lock, which the test holds (as a long transaction would), so they are cancelled
by the server's own timeout every time; every other client's go through.

A real overload (Round 31): the swap lock, which every unit takes first, held exclusively by
another transaction (a rebuild's swap): every statement is cancelled while a plain ``SELECT 1``
answers at once. The worker's probe takes that lock, within a tenth of the pool's
``statement_timeout``: unanswered, so nothing is dead-lettered (the old probe, ``SELECT 1``,
dead-lettered the event). Likewise a lock on ``fu_applied_events``, which every unit writes,
held ``SHARE`` elsewhere (Round 32: the probe takes that table's lock too; the swap lock alone
answered, and the event was dead-lettered)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.pg_schemas import (
    LIVE_CLIENT_LOCK_CLASS,
    LIVE_SCHEMA,
    SWAP_LOCK_KEY,
    with_search_path,
)
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application import batches
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.projector import Projection
from branchline_followup.bootstrap import prepare_database
from branchline_followup.domain import FollowupPolicy
from branchline_followup.entrypoints.worker import handle_batch, worker_probe
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka import consuming
from branchline_shared.kafka.consuming import ATTEMPTS, CANCELLED, CANCELLED_ALONE, RawMessage
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import is_reachable, open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc, relayed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PROJECTION = Projection(FollowupPolicy())
SLOW = "C-SLOW"


RETRY_PAUSE_S = 0.05


@pytest.fixture(autouse=True)
def short_retry_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """What these tests prove is which attempts count and what is given up, never how long a
    retry pauses; at the product's pauses (0.1 s doubled up to 5 s) the ~16 cancellations a
    test waits for spent ~10 s asleep per test, most of its time (#12, CI time). The
    cancellations themselves still come from the server's ``statement_timeout``."""
    monkeypatch.setattr(consuming, "FIRST_BACKOFF_S", RETRY_PAUSE_S)
    monkeypatch.setattr(
        batches,
        "retry_transient",
        functools.partial(consuming.retry_transient, max_backoff_s=RETRY_PAUSE_S),
    )


class DeadLetterBox:
    def __init__(self) -> None:
        self.sent: list[tuple[RawMessage, str]] = []

    async def send(self, raw: RawMessage, reason: str) -> None:
        self.sent.append((raw, reason))


@contextlib.asynccontextmanager
async def impatient_pool(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """The worker's pool, whose statements the server cancels after 500 ms."""
    await prepare_database(settings)
    dsn = with_search_path(settings.followup_database_url, LIVE_SCHEMA)
    pool = await open_pool(f"{dsn}&statement_timeout=500", max_size=2, session_state=False)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def impatient_units(settings: BranchlineSettings) -> AsyncIterator[PostgresUnitsOfWork]:
    """The worker's units on :func:`impatient_pool`."""
    async with impatient_pool(settings) as pool:
        yield PostgresUnitsOfWork(pool)


@contextlib.asynccontextmanager
async def client_held(settings: BranchlineSettings, client_id: str) -> AsyncIterator[None]:
    """``client_id``'s lock held by another transaction until the block ends."""
    holder = await asyncpg.connect(settings.followup_database_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", LIVE_CLIENT_LOCK_CLASS, client_id
            )
            yield
    finally:
        await holder.close()


def registrations(*clients: str) -> list[RecordedEvent]:
    history = History()
    at = now_utc() - timedelta(days=1)
    for client in clients:
        history.registered(client, at)
    return history.events


async def applied(db: asyncpg.Connection[Any], events: list[RecordedEvent]) -> set[uuid.UUID]:
    rows = await db.fetch(
        "SELECT event_id FROM fu_applied_events WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    return {r["event_id"] for r in rows}


async def test_an_event_whose_statement_is_cancelled_every_time_alone_is_dead_lettered(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    events = registrations("C-FAST-1", SLOW, "C-FAST-2")
    raws = relayed(events)
    dead = DeadLetterBox()
    async with impatient_units(settings) as units, client_held(settings, SLOW):
        # bounded only so that the old code (retried for ever) fails instead of hanging
        async with asyncio.timeout(60):
            await handle_batch(raws, units, dead, PROJECTION)  # type: ignore[arg-type]
    assert [(raw.offset, reason) for raw, reason in dead.sent] == [
        (1, f"projection failed: StatementCancelled('statement cancelled {CANCELLED_ALONE} times')")
    ]
    assert await applied(db, events) == {events[0].event_id, events[2].event_id}
    # the operator is told where the consumer is held: the offsets, never a value
    retried = [getattr(r, "where", None) for r in caplog.records if "retrying" in r.message]
    assert "intake.events:0:0-2" in retried  # the batch
    assert "intake.events:0:1-1" in retried  # the event alone


async def test_an_event_alone_whose_statement_is_cancelled_is_retried_in_sight(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """Nothing else in its batch to tell its cancellations from everyone's: retried past the
    bound, its attempts in the gauge, and applied once the lock is let go."""
    consumer = f"test-{uuid.uuid4().hex[:8]}"
    events = registrations(SLOW)
    batch = [Delivered(events[0], SourcePosition("intake", 1), ("intake.events", 0, 0))]
    async with impatient_units(settings) as units:
        cancelled = CANCELLED.labels(consumer)
        async with client_held(settings, SLOW):
            applying = asyncio.ensure_future(
                apply_batch(units, batch, PROJECTION, consumer=consumer)
            )
            # past both bounded stages (the batch's, then the event's own): retried still
            while cancelled._value.get() <= 2 * CANCELLED_ALONE:
                assert not applying.done(), applying.result()
                await asyncio.sleep(0.1)
            assert ATTEMPTS.labels(consumer)._value.get() >= 1
        outcome = await asyncio.wait_for(applying, 30)
    assert (outcome.applied, outcome.failed) == (1, [])
    assert ATTEMPTS.labels(consumer)._value.get() == 0
    assert await applied(db, events) == {events[0].event_id}


ALONE = 3  # consumer_cancelled_alone_attempts, as the tests set it (default 5)
LONE_REASON = (
    "projection failed: StatementCancelled('statement cancelled 3 times in a row with the "
    "event alone, the database answering a probe after each')"
)


async def test_a_lone_event_cancelled_while_the_database_answers_is_dead_lettered(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing else in its fetch, its statement cancelled every time (its client's lock held
    by a long transaction), while the worker's pool answers the probe after each: after the
    setting's attempts alone it is dead-lettered with the reason and the worker goes on to
    the next events (old code: retried for ever, the worker held, #12). Replayed once the
    lock is let go, it is applied; a duplicate of the replay changes nothing."""
    slow = registrations(SLOW)
    after = registrations("C-AFTER")
    dead = DeadLetterBox()
    async with impatient_pool(settings) as pool:
        units = PostgresUnitsOfWork(pool)
        answering = worker_probe(pool)
        async with client_held(settings, SLOW):
            # bounded only so that the old code (retried for ever) fails instead of hanging
            async with asyncio.timeout(60):
                await handle_batch(
                    relayed(slow),
                    units,
                    dead,  # type: ignore[arg-type]
                    PROJECTION,
                    answering=answering,
                    alone_attempts=ALONE,
                )
            assert [(raw.offset, reason) for raw, reason in dead.sent] == [(0, LONE_REASON)]
            assert await applied(db, slow) == set()
            # the next fetch flows (the client's lock still held)
            await handle_batch(
                relayed(after),
                units,
                dead,
                PROJECTION,
                answering=answering,  # type: ignore[arg-type]
            )
            assert await applied(db, after) == {after[0].event_id}
        assert any("while the database answered" in r.message for r in caplog.records)
        # ``branchline dlq replay`` puts the message back as it was: applied, and once
        replayed = dead.sent[0][0]
        for _ in range(2):
            await handle_batch(
                [replayed],
                units,
                dead,
                PROJECTION,
                answering=answering,  # type: ignore[arg-type]
            )
        assert len(dead.sent) == 1
    assert await applied(db, slow) == {slow[0].event_id}
    clients = await db.fetchval(
        "SELECT count(*) FROM fu_read.fu_clients WHERE client_id = $1", SLOW
    )
    assert clients == 1


async def test_a_lone_event_cancelled_while_the_probe_goes_unanswered_is_not_dead_lettered(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """The guard: the probe unanswered (the database unreachable from the worker, or
    overloaded: every statement cancelled), the cancellations are not the event's own; it is
    retried past every bound, in sight, never dead-lettered, and applied once it can be."""
    consumer = f"test-{uuid.uuid4().hex[:8]}"
    events = registrations(SLOW)
    batch = [Delivered(events[0], SourcePosition("intake", 1), ("intake.events", 0, 0))]
    # a pool nobody answers: its probe fails as a database away does
    away = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0, max_size=1)
    probes = 0

    async def answering() -> bool:
        nonlocal probes
        probes += 1
        return await is_reachable(away)

    try:
        async with impatient_units(settings) as units:
            cancelled = CANCELLED.labels(consumer)
            async with client_held(settings, SLOW):
                applying = asyncio.ensure_future(
                    apply_batch(
                        units,
                        batch,
                        PROJECTION,
                        consumer=consumer,
                        answering=answering,
                        alone_attempts=ALONE,
                    )
                )
                # past the bounded stages and ALONE probed attempts twice over: retried still
                while cancelled._value.get() <= 2 * CANCELLED_ALONE + 2 * ALONE:
                    assert not applying.done(), applying.result()
                    await asyncio.sleep(0.1)
                assert probes >= 2 * ALONE
            async with asyncio.timeout(30):
                outcome = await applying
    finally:
        await away.close()
    assert (outcome.applied, outcome.failed) == (1, [])
    assert await applied(db, events) == {events[0].event_id}


@contextlib.asynccontextmanager
async def swap_lock_held(settings: BranchlineSettings) -> AsyncIterator[None]:
    """The swap lock held exclusively by another transaction until the block ends (as a
    rebuild's swap holds it): every unit waits for it, whatever its client."""
    holder = await asyncpg.connect(settings.followup_database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", SWAP_LOCK_KEY)
            yield
    finally:
        await holder.close()


async def applied_only_after(
    settings: BranchlineSettings,
    db: asyncpg.Connection[Any],
    held: contextlib.AbstractAsyncContextManager[None],
    client: str,
) -> None:
    """A lone registration of ``client`` cancelled every time while ``held`` holds what its
    unit needs: past the bounded stages and ``ALONE`` probed attempts twice over it is retried
    still, never dead-lettered, and applied once ``held`` lets go."""
    consumer = f"test-{uuid.uuid4().hex[:8]}"
    events = registrations(client)
    batch = [Delivered(events[0], SourcePosition("intake", 1), ("intake.events", 0, 0))]
    async with impatient_pool(settings) as pool:
        units = PostgresUnitsOfWork(pool)
        cancelled = CANCELLED.labels(consumer)
        async with held:
            applying = asyncio.ensure_future(
                apply_batch(
                    units,
                    batch,
                    PROJECTION,
                    consumer=consumer,
                    answering=worker_probe(pool),
                    alone_attempts=ALONE,
                )
            )
            async with asyncio.timeout(60):
                while cancelled._value.get() <= 2 * CANCELLED_ALONE + 2 * ALONE:
                    assert not applying.done(), applying.result().failed
                    await asyncio.sleep(0.1)
        async with asyncio.timeout(30):
            outcome = await applying
    assert (outcome.applied, outcome.failed) == (1, [])
    assert await applied(db, events) == {events[0].event_id}


async def test_no_event_is_dead_lettered_while_the_swap_lock_holds_every_unit(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """Every unit cancelled (the swap lock held elsewhere) while ``SELECT 1`` answers: past
    the attempts after which a lone event's own cancellations dead-letter it, the event is
    retried still, never dead-lettered, and applied once the lock is let go (old probe:
    dead-lettered after the setting's attempts, #12)."""
    await applied_only_after(settings, db, swap_lock_held(settings), "C-SWAP")


@contextlib.asynccontextmanager
async def share_locked(settings: BranchlineSettings, table: str) -> AsyncIterator[None]:
    """``table`` locked ``SHARE`` by another transaction until the block ends (the mode a
    plain ``CREATE INDEX`` takes): the units that write it wait, the swap lock does not."""
    holder = await asyncpg.connect(settings.followup_database_url)
    try:
        async with holder.transaction():
            await holder.execute(f"LOCK TABLE {table} IN SHARE MODE")
            yield
    finally:
        await holder.close()


async def test_no_event_is_dead_lettered_while_a_table_lock_holds_every_unit(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """Every unit cancelled (``fu_applied_events``, which every unit writes, locked ``SHARE``
    elsewhere) while the swap lock answers at once: the event is retried still, never
    dead-lettered, and applied once the lock is let go (Round 32: the probe takes that
    table's lock too; the probe of the swap lock alone dead-lettered it, #12)."""
    held = share_locked(settings, f"{LIVE_SCHEMA}.fu_applied_events")
    await applied_only_after(settings, db, held, "C-TABLE")


@pytest.mark.parametrize(
    "table",
    [f"{LIVE_SCHEMA}.fu_tasks", f"{LIVE_SCHEMA}.fu_client_events"],
    ids=["tasks", "journal"],
)
async def test_no_event_is_dead_lettered_while_a_table_only_its_type_writes_is_locked(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], table: str
) -> None:
    """A registration (which opens a revisit task: a row of ``fu_tasks``; and its journal
    row) cancelled every time, a table it writes but not every unit does locked ``SHARE``
    elsewhere: the event is retried still, never dead-lettered, and applied once the lock is
    let go (the probe takes the write lock of every table a unit can write; the probe of
    ``fu_applied_events`` alone answered, and the event was dead-lettered, #12)."""
    await applied_only_after(settings, db, share_locked(settings, table), "C-ONLY")
    assert await db.fetchval("SELECT count(*) FROM fu_tasks WHERE client_id = $1", "C-ONLY") == 1
