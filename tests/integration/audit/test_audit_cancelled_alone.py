"""The audit consumer and an event alone whose append the database cancels again and again
(#12, docs/reliability.md "A statement cancelled again and again"): while the ledger's pool
answers a probe after each cancellation, the event is dead-lettered with the reason after the
setting's attempts and the consumer goes on; replayed later, it is appended once, at the
ledger's next position, and the ledger verifies (the old code held the consumer for ever).

The consumer's pool runs with a short ``statement_timeout``; the event's append waits on a
ledger row of the same event id that another transaction inserted and holds uncommitted (as a
long transaction would hold what it writes), so it is cancelled by the server every time;
anything else goes through.

A real overload (Round 31): the ledger's lock, which every append takes first, held by another
transaction (a long checkpoint, a repair by hand): every append is cancelled while a plain
``SELECT 1`` still answers at once. The probe takes that lock within a tenth of the pool's
``statement_timeout``, so it is not answered and nothing is dead-lettered (the old probe,
``SELECT 1``, dead-lettered the event). Likewise ``audit_ledger`` locked ``SHARE`` elsewhere,
which every append's ``COPY`` waits for (Round 32: the probe takes that table's lock too)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.database import prepare_database, role_pool
from branchline_audit.adapters.ledger import LEDGER_LOCK_KEY
from branchline_audit.application.context import AuditContext
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import CONSUMER, build_consumer, ledger_probe
from branchline_audit.bootstrap import audit_context as built_context
from branchline_shared.clock import SystemClock
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.consuming import CANCELLED, CANCELLED_ALONE
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.kafka.wire import encode_event
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import event, quick_settings, superuser
from tests.support.kafka import produce, read_all
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALONE = 2  # consumer_cancelled_alone_attempts, as the test sets it (default 5)


@contextlib.asynccontextmanager
async def impatient_audit(settings: BranchlineSettings) -> AsyncIterator[AuditContext]:
    """The audit context on a writer pool whose statements the server cancels after 500 ms."""
    await prepare_database(settings)
    url = settings.audit_database_url
    joined = "&" if "?" in url else "?"
    pool = await role_pool(
        f"{url}{joined}statement_timeout=500", settings.audit_db_writer_role, max_size=4
    )
    try:
        yield built_context(settings, pool, SystemClock())
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def consumer_running(
    settings: BranchlineSettings, audit: AuditContext, pool: asyncpg.Pool[Any]
) -> AsyncIterator[None]:
    producer = make_producer(settings, client_id="audit-test-dlq")
    await producer.start()
    consumer = build_consumer(
        settings, audit.ledger, producer, SystemClock(), None, answering=ledger_probe(pool)
    )
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(20):
            await consumer.started.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


@contextlib.asynccontextmanager
async def event_id_held(settings: BranchlineSettings, event_id: str) -> AsyncIterator[None]:
    """A ledger row of ``event_id`` inserted by another transaction, uncommitted until the
    block ends (then rolled back): an append of that id waits for it."""
    async with superuser(settings) as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "INSERT INTO audit_ledger (position, event_id, event, event_type, appended_at, "
                "prev_hash, hash) VALUES (1000000000, $1, '{}'::jsonb, 'held', now(), $2, $2)",
                event_id,
                b"\0" * 32,
            )
            yield
        finally:
            await tx.rollback()


async def ids(audit: AuditContext) -> list[str]:
    return [str(e.entry.event["event_id"]) async for e in audit.ledger.scan_stored()]


async def test_a_lone_event_cancelled_while_the_database_answers_is_dead_lettered(
    settings: BranchlineSettings,
) -> None:
    s = quick_settings(settings, consumer_cancelled_alone_attempts=ALONE)
    topics = declare_topics(s)
    await ensure_topics(s.kafka_bootstrap, topics.all())
    slow, after = (
        RecordedEvent.model_validate(
            event(n, client_id=f"C-{n}", event_type="visit.arrived")
        ).model_dump(mode="json")
        for n in (1, 2)
    )
    async with impatient_audit(s) as audit:
        pool = audit.ledger.pool  # type: ignore[attr-defined]
        async with event_id_held(s, slow["event_id"]), consumer_running(s, audit, pool):
            await produce(
                s.kafka_bootstrap, topics.intake_events.name, [(b"C-1", encode_event(slow))]
            )
            dead = await read_all(
                s.kafka_bootstrap, topics.audit_consumer_dlq.name, expect=1, within=60
            )
            # the consumer goes on: the next event is appended (the row still held)
            await produce(
                s.kafka_bootstrap, topics.intake_events.name, [(b"C-2", encode_event(after))]
            )
            await eventually(lambda: _holds(audit, [after["event_id"]]), within=30)
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert (
            headers["dlq_reason"]
            == (
                f"handler failed: statement cancelled {ALONE} times in a row with the event alone, "
                "the database answering a probe after each"
            ).encode()
        )
        # replayed (``branchline dlq replay`` puts the message back on its source topic), and
        # a duplicate of the replay: appended once, after the event that went on meanwhile
        replay = [(dead[0].key, dead[0].value), (dead[0].key, dead[0].value)]
        async with consumer_running(s, audit, pool):
            await produce(s.kafka_bootstrap, topics.intake_events.name, replay)
            await eventually(
                lambda: _holds(audit, [after["event_id"], slow["event_id"]]), within=30
            )
            await asyncio.sleep(0.5)  # a duplicate in flight would land now
        assert await ids(audit) == [after["event_id"], slow["event_id"]]
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok
        assert verdict.entries == 2


async def _holds(audit: AuditContext, expected: list[str]) -> bool:
    return await ids(audit) == expected


@contextlib.asynccontextmanager
async def ledger_lock_held(settings: BranchlineSettings) -> AsyncIterator[None]:
    """The ledger's lock held by another transaction until the block ends: every append
    waits for it (the database slow for every event, not for one)."""
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
        yield


async def appended_only_after(
    s: BranchlineSettings,
    held: contextlib.AbstractAsyncContextManager[None],
    lone: dict[str, Any],
) -> None:
    """``lone``'s append cancelled every time while ``held`` holds what it needs: past the
    point where the old probe dead-lettered it (the batch's bounded attempts, then twice the
    lone event's) nothing is in the dead-letter topic and nothing appended; once ``held``
    lets go the event is appended."""
    topics = declare_topics(s)
    await ensure_topics(s.kafka_bootstrap, topics.all())
    async with impatient_audit(s) as audit:
        pool = audit.ledger.pool  # type: ignore[attr-defined]
        async with consumer_running(s, audit, pool):
            before = CANCELLED.labels(CONSUMER)._value.get()
            async with held:
                key = str(lone["client_id"]).encode()
                await produce(
                    s.kafka_bootstrap, topics.intake_events.name, [(key, encode_event(lone))]
                )
                past = before + CANCELLED_ALONE + 2 * ALONE
                # the old probe dead-lettered it after ``CANCELLED_ALONE + ALONE``: no more
                # attempts then, and the dead letter below tells why
                with contextlib.suppress(AssertionError):
                    await eventually(lambda: _past(past), within=40)
                dead = await read_all(
                    s.kafka_bootstrap, topics.audit_consumer_dlq.name, expect=0, within=5
                )
                assert [dict(d.headers)["dlq_reason"] for d in dead] == []
                assert await _past(past)
                assert await ids(audit) == []
            await eventually(lambda: _holds(audit, [lone["event_id"]]), within=30)
        assert await ids(audit) == [lone["event_id"]]


def a_visit(client_id: str) -> dict[str, Any]:
    return RecordedEvent.model_validate(
        event(1, client_id=client_id, event_type="visit.arrived")
    ).model_dump(mode="json")


async def test_no_event_is_dead_lettered_while_the_ledger_lock_holds_every_append(
    settings: BranchlineSettings,
) -> None:
    """Every append cancelled (the ledger's lock held elsewhere) while ``SELECT 1`` answers:
    past the attempts after which a lone event's own cancellations dead-letter it, the event
    is still retried (nothing in the dead-letter topic) and appended once the lock is let go
    (old probe: dead-lettered after the setting's attempts, #12)."""
    s = quick_settings(settings, consumer_cancelled_alone_attempts=ALONE)
    await appended_only_after(s, ledger_lock_held(s), a_visit("C-1"))


@contextlib.asynccontextmanager
async def share_locked(settings: BranchlineSettings, table: str) -> AsyncIterator[None]:
    """``table`` locked ``SHARE`` by another transaction until the block ends (the mode a
    plain ``CREATE INDEX`` takes): the appends that write it wait, while the ledger's advisory
    lock is free."""
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        yield


async def test_no_event_is_dead_lettered_while_a_table_lock_holds_every_append(
    settings: BranchlineSettings,
) -> None:
    """Every append cancelled (``audit_ledger`` locked ``SHARE`` elsewhere) while the ledger's
    advisory lock answers at once: the event is still retried (nothing in the dead-letter
    topic) and appended once the lock is let go (Round 32: the probe takes the table's lock
    too; the probe of the advisory lock alone dead-lettered it, #12)."""
    s = quick_settings(settings, consumer_cancelled_alone_attempts=ALONE)
    await appended_only_after(s, share_locked(s, "audit_ledger"), a_visit("C-1"))


async def _past(cancellations: float) -> bool:
    return bool(CANCELLED.labels(CONSUMER)._value.get() >= cancellations)


async def test_no_event_is_dead_lettered_while_a_table_only_its_type_writes_is_locked(
    settings: BranchlineSettings,
) -> None:
    """An erasure request's append cancelled every time (``audit_restricted_clients``, which
    only such events write, locked ``SHARE`` elsewhere; every other append, and the ledger's
    lock, go through) while ``audit_ledger`` and the ledger's lock answer at once: the event
    is still retried (nothing in the dead-letter topic) and appended once the lock is let go,
    its client restricted (the probe takes the write lock of every table an append can write;
    the probe of ``audit_ledger`` alone dead-lettered it, #12)."""
    s = quick_settings(settings, consumer_cancelled_alone_attempts=ALONE)
    erasure = RecordedEvent.model_validate(
        event(1, client_id="C-9", event_type="client.erasure_requested", data={"reason": "r"})
    ).model_dump(mode="json")
    await appended_only_after(s, share_locked(s, "audit_restricted_clients"), erasure)
    async with superuser(s) as conn:
        state = await conn.fetchval(
            "SELECT state FROM audit_restricted_clients WHERE client_id = $1", "C-9"
        )
    assert state == "restricted"
