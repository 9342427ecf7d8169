"""One contract, two implementations: the in-memory event store (the fake used by application
tests) and the PostgreSQL one must pass the same assertions."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.eventstore.memory import InMemoryEventStore
from branchline_shared.eventstore.ports import (
    ConcurrencyError,
    EventStore,
    LogPosition,
    Outbox,
    RefusalRaced,
    SharedTransaction,
)
from branchline_shared.eventstore.postgres import (
    PostgresEventStore,
    PostgresUnitOfWork,
    _text_literal,
)
from branchline_shared.postgres.migrations import load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database, open_pool
from tests.support.stack import Infra, unique

TOPIC = "contract.events"
MANY = 131  # a batch's worth of streams in one unit of work


def event(stream: str, version: int, *, event_id: uuid.UUID | None = None) -> RecordedEvent:
    now = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    client = stream.removeprefix("client-")
    return RecordedEvent(
        event_id=event_id or uuid.uuid4(),
        type="client.registered",
        occurred_at=now,
        recorded_at=now,
        source="test",
        actor=Actor(id="s-1", role="teller"),
        client_id=client,
        stream_id=stream,
        stream_version=version,
        data={"client_type": "individual", "rm_id": "rm-1"},
    )


class EventStoreContract:
    """Subclasses provide ``store``; every test here must hold for every implementation."""

    async def test_appends_and_reads_a_stream_in_order(self, store: EventStore) -> None:
        async with store.unit_of_work() as uow:
            assert await uow.lock_streams(["client-a"]) == {"client-a": 0}
            uow.stage(event("client-a", 1), topic=TOPIC, submission_hash=b"h1")
            uow.stage(event("client-a", 2), topic=TOPIC, submission_hash=None)
            positions = await uow.commit()
        assert [p.stream_version for p in positions] == [1, 2]
        assert positions[0].global_position < positions[1].global_position
        stored = await store.read_stream("client-a")
        assert [s.event.stream_version for s in stored] == [1, 2]
        assert stored[0].submission_hash == b"h1"
        assert [
            s.event.stream_version for s in await store.read_stream("client-a", from_version=2)
        ] == [2]

    async def test_versions_and_existing_ids_are_visible_to_the_next_unit_of_work(
        self, store: EventStore
    ) -> None:
        first = event("client-b", 1)
        async with store.unit_of_work() as uow:
            await uow.lock_streams(["client-b"])
            uow.stage(first, topic=TOPIC, submission_hash=None)
            await uow.commit()
        async with store.unit_of_work() as uow:
            assert await uow.lock_streams(["client-b", "client-c"]) == {
                "client-b": 1,
                "client-c": 0,
            }
            existing = await uow.find_existing([first.event_id, uuid.uuid4()])
            assert list(existing) == [first.event_id]
            histories = await uow.load_streams(["client-b", "client-c"])
            assert [e.event_id for e in histories["client-b"]] == [first.event_id]
            assert histories["client-c"] == []

    async def test_a_stale_version_is_a_concurrency_error_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        async with store.unit_of_work() as uow:
            await uow.lock_streams(["client-d"])
            uow.stage(event("client-d", 1), topic=TOPIC, submission_hash=None)
            await uow.commit()

        async def write_that_must_fail() -> None:
            async with store.unit_of_work() as uow:
                await uow.lock_streams(["client-d"])
                uow.stage(event("client-e", 1), topic=TOPIC, submission_hash=None)
                uow.stage(event("client-d", 1), topic=TOPIC, submission_hash=None)
                await uow.commit()

        with pytest.raises(ConcurrencyError):
            await write_that_must_fail()
        assert await store.read_stream("client-e") == []
        assert len(await store.read_stream("client-d")) == 1

    async def test_a_reused_event_id_is_a_concurrency_error(self, store: EventStore) -> None:
        shared_id = uuid.uuid4()
        async with store.unit_of_work() as uow:
            await uow.lock_streams(["client-f"])
            uow.stage(event("client-f", 1, event_id=shared_id), topic=TOPIC, submission_hash=None)
            await uow.commit()

        async def write_that_must_fail() -> None:
            async with store.unit_of_work() as uow:
                await uow.lock_streams(["client-g"])
                uow.stage(
                    event("client-g", 1, event_id=shared_id), topic=TOPIC, submission_hash=None
                )
                await uow.commit()

        with pytest.raises(ConcurrencyError):
            await write_that_must_fail()

    @pytest.mark.parametrize("second", ["refusal", "acceptance"], ids=["refusal", "acceptance"])
    async def test_a_refusal_and_an_acceptance_of_one_id_are_never_both_recorded(
        self, store: EventStore, second: str
    ) -> None:
        """#12, D-05 (docs/intake.md "A refusal and an acceptance at the same moment"): the
        refusal of a sent id X is recorded under another id R, so no unique index orders it
        against an event accepted under X; each writer claims X (``claim_ids``) and the one
        that ends second, finding the other's row, is :class:`RefusalRaced`, nothing of it
        kept. Both stores: the in-memory one did not claim until Round 31."""
        sent, refusal = uuid.uuid4(), uuid.uuid4()
        tag = second[0]
        # the first writer: the event accepted under X, or X's refusal (under R)
        first_id = refusal if second == "acceptance" else sent
        async with store.unit_of_work() as uow:
            await uow.lock_streams([f"client-r{tag}1"])
            uow.stage(
                event(f"client-r{tag}1", 1, event_id=first_id), topic=TOPIC, submission_hash=None
            )
            await uow.commit()

        # the second, claiming X as it would had it not seen the first's row
        second_id, claim = (
            (sent, (sent, refusal, False))
            if second == "acceptance"
            else (
                refusal,
                (sent, sent, True),
            )
        )

        async def second_writer() -> None:
            async with store.unit_of_work() as uow:
                await uow.lock_streams([f"client-r{tag}2"])
                uow.stage(
                    event(f"client-r{tag}2", 1, event_id=second_id),
                    topic=TOPIC,
                    submission_hash=None,
                )
                uow.claim_ids([claim])
                await uow.commit()

        with pytest.raises(RefusalRaced):
            await second_writer()
        assert await store.read_stream(f"client-r{tag}2") == []
        async with store.unit_of_work() as uow:
            assert list(await uow.find_existing([sent, refusal])) == [first_id]

    async def test_a_claim_whose_other_id_is_not_stored_commits(self, store: EventStore) -> None:
        """A claim (#12) fails a unit only when the id it names is stored: an acceptance
        under X with no refusal of X, and a refusal of Y with nothing accepted under Y, are
        both kept (one unit, as a batch may hold both)."""
        accepted, refused, refusal = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        async with store.unit_of_work() as uow:
            await uow.lock_streams(["client-c1"])
            uow.stage(event("client-c1", 1, event_id=accepted), topic=TOPIC, submission_hash=b"h")
            uow.stage(event("client-c1", 2, event_id=refusal), topic=TOPIC, submission_hash=None)
            uow.claim_ids([(accepted, uuid.uuid4(), False), (refused, refused, True)])
            await uow.commit()
        assert [s.event.event_id for s in await store.read_stream("client-c1")] == [
            accepted,
            refusal,
        ]

    async def test_the_log_holds_every_event_once_in_order(self, store: EventStore) -> None:
        for i in range(5):
            async with store.unit_of_work() as uow:
                await uow.lock_streams([f"client-l{i}"])
                uow.stage(event(f"client-l{i}", 1), topic=TOPIC, submission_hash=None)
                await uow.commit()
        seen: list[str] = []
        after = LogPosition.start()
        while True:
            page = await store.read_log(after, limit=2)
            if not page:
                break
            seen.extend(r.event.client_id for r in page)
            after = page[-1].log_position
        assert seen == [f"l{i}" for i in range(5)]

    async def test_the_outbox_holds_what_is_committed_until_it_is_marked_published(
        self, store: EventStore
    ) -> None:
        outbox: Outbox = store.outbox_port()  # type: ignore[attr-defined]
        assert await outbox.pending(10) == []
        async with store.unit_of_work() as uow:
            await uow.lock_streams(["client-o1", "client-o2"])
            uow.stage(event("client-o1", 1), topic=TOPIC, submission_hash=None)
            uow.stage(event("client-o2", 1), topic=TOPIC, submission_hash=None)
            positions = await uow.commit()
        pending = await outbox.pending(10)
        assert [p.message_key for p in pending] == ["o1", "o2"]
        assert [p.global_position for p in pending] == [p.global_position for p in positions]
        assert pending[0].envelope["stream_id"] == "client-o1"
        assert {p.topic for p in pending} == {TOPIC}
        assert await outbox.backlog() == 2
        assert [p.message_key for p in await outbox.pending(1)] == ["o1"]  # oldest first
        await outbox.mark_published([pending[0].outbox_id])
        assert [p.message_key for p in await outbox.pending(10)] == ["o2"]
        assert await outbox.backlog() == 1

    async def test_a_large_unit_of_work_reads_back_as_written(self, store: EventStore) -> None:
        """A batch's worth of streams in one unit of work (#12): every answer, row, outbox
        row in order and version as written; a reused id writes none of them."""
        streams = [f"client-big{i}" for i in range(MANY)]
        written = [event(s, 1) for s in streams] + [event(streams[0], 2)]
        # Text that JSON must escape, stored and read back as it was.
        written[1] = written[1].model_copy(
            update={"data": {**written[1].data, "note": 'a\nb\r\n"c\\n\u2028\t'}}
        )
        async with store.unit_of_work() as uow:
            assert set((await uow.lock_streams(streams)).values()) == {0}
            for i, e in enumerate(written):
                uow.stage(e, topic=TOPIC, submission_hash=None if i % 2 else bytes([i % 256]))
            positions = await uow.commit()
        assert [(p.event_id, p.stream_id, p.stream_version) for p in positions] == [
            (e.event_id, e.stream_id, e.stream_version) for e in written
        ]
        globals_ = [p.global_position for p in positions]
        assert globals_ == sorted(globals_)
        assert len(set(globals_)) == len(globals_)
        first = await store.read_stream(streams[0])
        assert [s.event for s in first] == [written[0], written[-1]]
        assert [s.position for s in first] == [positions[0], positions[-1]]
        assert first[0].submission_hash == bytes([0])
        assert (await store.read_stream(streams[1]))[0].submission_hash is None
        async with store.unit_of_work() as uow:
            versions = await uow.lock_streams(streams)
        assert versions == {s: 2 if s == streams[0] else 1 for s in streams}
        pending = await store.outbox_port().pending(len(written) + 10)
        assert [p.message_key for p in pending] == [e.subject_id for e in written]
        assert [p.global_position for p in pending] == globals_
        assert [p.envelope for p in pending] == [e.model_dump(mode="json") for e in written]
        reused = [event(f"client-again{i}", 1) for i in range(MANY)]
        reused.append(event("client-again-last", 1, event_id=written[5].event_id))
        with pytest.raises(ConcurrencyError):
            await _write_all(store, reused)
        assert await store.read_stream(reused[0].stream_id) == []
        assert len(await store.outbox_port().pending(len(written) + 10)) == len(written)

    async def test_a_likely_version_is_a_hint_every_stream_ends_at_its_last_event(
        self, store: EventStore
    ) -> None:
        """#12: ``lock_streams(likely=...)`` (a batch's items per stream) changes no answer:
        the versions locked are the streams' own (0 for new ones, which have no history),
        and when the unit ends each stream is at its last event's version, whether the hint
        held, was too high, too low, or nothing was written to the stream at all."""
        old = event("client-l-old", 1)
        await _write_all(store, [old])
        held, fewer, none, more = (f"client-l-{n}" for n in ("held", "fewer", "none", "more"))
        streams = [held, fewer, none, more, old.stream_id]
        likely = {held: 1, fewer: 3, none: 1, more: 1, old.stream_id: 5}
        async with store.unit_of_work() as uow:
            versions = await uow.lock_streams(streams, likely=likely)
            assert versions == {held: 0, fewer: 0, none: 0, more: 0, old.stream_id: 1}
            assert await uow.load_streams([none, held]) == {none: [], held: []}
            for written in ([event(held, 1), event(more, 1)], [event(more, 2), event(fewer, 1)]):
                for e in written:  # in two writes, as a batch's parts
                    uow.stage(e, topic=TOPIC, submission_hash=None)
                await uow.commit()
            uow.stage(event(old.stream_id, 2), topic=TOPIC, submission_hash=None)
            await uow.commit()
        async with store.unit_of_work() as uow:
            versions = await uow.lock_streams(streams)
        assert versions == {held: 1, fewer: 1, none: 0, more: 2, old.stream_id: 2}
        assert [s.event.stream_version for s in await store.read_stream(more)] == [1, 2]
        # a unit that fails leaves nothing, its hint included
        with pytest.raises(RuntimeError):
            await _write_then_raise(store, event("client-l-failed", 1))
        async with store.unit_of_work() as uow:
            assert await uow.lock_streams(["client-l-failed"]) == {"client-l-failed": 0}
            assert await uow.load_streams(["client-l-failed"]) == {"client-l-failed": []}


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        return InMemoryEventStore()


@pytest.mark.integration
class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, infra: Infra) -> AsyncIterator[EventStore]:
        url = infra.database_url(unique("es_"))
        await ensure_database(url)
        pool = await open_pool(url)
        async with pool.acquire() as conn:
            await migrate(
                conn, "eventstore", load_migrations("branchline_shared.eventstore.migrations")
            )
        yield PostgresEventStore(pool)
        await pool.close()

    async def test_a_group_keeps_each_callers_writes_its_own(self, store: EventStore) -> None:
        """Group commit (#12): the units of work of a shared transaction take the group's
        locks and versions instead of asking again, and share the caller's savepoint; a
        caller whose write fails retries from a clean state, a caller that fails after its
        write is rolled back alone, and the versions the next caller sees are the stored
        ones."""
        assert isinstance(store, PostgresEventStore)
        taken = event("client-g0", 1)
        async with store.unit_of_work() as uow:
            await uow.lock_streams(["client-g0"])
            uow.stage(taken, topic=TOPIC, submission_hash=None)
            await uow.commit()
        kept, first = event("client-g2", 1), event("client-g1", 1)
        late = event("client-g9", 1)  # stored by another writer while the group runs
        async with store.shared_transaction() as shared:
            await shared.lock_streams(["client-g1", "client-g2"])
            ids = [taken.event_id, kept.event_id, first.event_id, late.event_id]
            await shared.find_existing(ids)
            async with shared.isolated():  # caller 1 writes
                assert await _append(shared, first) == {"client-g1": 0}
            async with store.unit_of_work() as uow:  # another writer, another stream
                await uow.lock_streams(["client-g9"])
                uow.stage(late, topic=TOPIC, submission_hash=None)
                await uow.commit()
            async with shared.isolated():  # caller 2: the group's answer about it is stale
                async with shared.unit_of_work() as uow:
                    assert late.event_id not in await uow.find_existing([late.event_id])
                with pytest.raises(ConcurrencyError):  # its write loses the race
                    await _append(shared, late.model_copy(update={"stream_id": "client-g4"}))
                async with shared.unit_of_work() as uow:  # and the retry reads the database
                    assert late.event_id in await uow.find_existing([late.event_id])
            with pytest.raises(RuntimeError, match="after the write"):
                await _lost_race_retry_then_bug(shared, taken.event_id, kept)
            async with shared.isolated():  # caller 4
                # Caller 1's version and id stand, caller 3's were rolled back with it; a
                # stream the group does not hold is locked on the spot.
                async with shared.unit_of_work() as uow:
                    assert set(await uow.find_existing(ids)) == {
                        taken.event_id,
                        first.event_id,
                        late.event_id,
                    }
                versions = await _append(
                    shared, event("client-g2", 1), event("client-g1", 2), event("client-g3", 1)
                )
                assert versions == {"client-g1": 1, "client-g2": 0, "client-g3": 0}
        assert [s.event.stream_version for s in await store.read_stream("client-g1")] == [1, 2]
        second = await store.read_stream("client-g2")
        assert len(second) == 1
        assert second[0].event.event_id != kept.event_id
        async with store.unit_of_work() as uow:
            assert await uow.lock_streams(["client-g1", "client-g2", "client-g3"]) == {
                "client-g1": 2,
                "client-g2": 1,
                "client-g3": 1,
            }
        pending = await store.outbox_port().pending(100)
        assert str(kept.event_id) not in {p.envelope["event_id"] for p in pending}
        assert len(pending) == 6  # client-g0's, the four events of the group, client-g9's

    async def test_a_nested_scope_in_a_group_rolls_back_alone(self, store: EventStore) -> None:
        assert isinstance(store, PostgresEventStore)
        outer, inner = event("client-n1", 1), event("client-n2", 1)
        async with store.shared_transaction() as shared:
            await shared.lock_streams(["client-n1", "client-n2"])
            async with shared.isolated():
                with pytest.raises(RuntimeError, match="nested"):
                    await _write_then_fail(shared, inner)
                assert await _append(shared, outer) == {"client-n1": 0}
            async with shared.isolated(), shared.unit_of_work() as uow:
                assert await uow.lock_streams(["client-n1", "client-n2"]) == {
                    "client-n1": 1,
                    "client-n2": 0,
                }
        assert [s.event.event_id for s in await store.read_stream("client-n1")] == [outer.event_id]
        assert await store.read_stream("client-n2") == []

    async def test_no_outbox_row_without_its_event_and_no_key_checked_per_row(
        self, store: EventStore
    ) -> None:
        """#12 (eventstore migration 007): es_outbox has no foreign key for PostgreSQL to
        check row by row; what it guarded holds by construction: a write whose events fail
        writes none of its outbox rows, and an event cannot be removed from under them."""
        assert isinstance(store, PostgresEventStore)
        async with store._pool.acquire() as conn:
            keys = await conn.fetch(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = 'es_outbox'::regclass AND contype = 'f'"
            )
        assert keys == []
        kept = event("client-fk1", 1)
        await _write_all(store, [kept])
        with pytest.raises(ConcurrencyError):  # the second event reuses the first's id
            await _write_all(
                store, [event("client-fk2", 1), event("client-fk3", 1, event_id=kept.event_id)]
            )
        pending = await store.outbox_port().pending(10)
        assert [p.message_key for p in pending] == ["fk1"]
        async with store._pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM es_events WHERE event_id = $1", kept.event_id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("TRUNCATE es_events CASCADE")
        assert [p.message_key for p in await store.outbox_port().pending(10)] == ["fk1"]

    async def test_a_stream_locked_at_version_0_has_no_history_to_read(
        self, store: EventStore
    ) -> None:
        """#12: a unit of work outside a group reads no history for the streams it locked at
        version 0 (a batch's new clients), and reads the others', as it wrote them too."""
        assert isinstance(store, PostgresEventStore)
        old = event("client-h-old", 1)
        async with store.unit_of_work() as uow:
            await uow.lock_streams([old.stream_id])
            uow.stage(old, topic=TOPIC, submission_hash=None)
            await uow.commit()
        async with store._pool.acquire() as conn, conn.transaction():
            spy = _QuerySpy(conn)
            uow = PostgresUnitOfWork(spy)
            await uow.lock_streams(["client-h-new", old.stream_id])
            assert await uow.load_streams(["client-h-new"]) == {"client-h-new": []}
            assert not any("envelope FROM es_events" in q for q in spy.queries)
            assert await uow.load_streams(["client-h-new", old.stream_id]) == {
                "client-h-new": [],
                old.stream_id: [old],
            }
            new = event("client-h-new", 1)
            uow.stage(new, topic=TOPIC, submission_hash=None)
            await uow.commit()
            assert await uow.load_streams(["client-h-new"]) == {"client-h-new": [new]}

    async def test_a_stream_the_lock_creates_costs_no_second_statement_and_stays_held(
        self, store: EventStore
    ) -> None:
        """#12: the statement that creates a new stream answers its version, and only the
        streams that existed are locked FOR UPDATE afterwards; a created stream is still this
        transaction's alone: another writer locking it waits for the commit and then sees the
        version written."""
        assert isinstance(store, PostgresEventStore)
        old = event("client-k-old", 1)
        await _write_all(store, [old])
        async with store._pool.acquire() as conn, conn.transaction():
            spy = _QuerySpy(conn)
            versions = await PostgresUnitOfWork(spy).lock_streams(["client-k1", "client-k2"])
            assert versions == {"client-k1": 0, "client-k2": 0}
            assert len(spy.queries) == 1, spy.queries
            spy.queries.clear()
            versions = await PostgresUnitOfWork(spy).lock_streams(["client-k3", old.stream_id])
            assert versions == {"client-k3": 0, old.stream_id: 1}
            assert len(spy.queries) == 2, spy.queries
            uow = PostgresUnitOfWork(conn)
            await uow.lock_streams(["client-k1"])
            uow.stage(event("client-k1", 1), topic=TOPIC, submission_hash=None)
            await uow.commit()
            waiting = asyncio.create_task(_lock_elsewhere(store, ["client-k1"]))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # the other writer waits for this transaction
        assert await asyncio.wait_for(waiting, timeout=10) == {"client-k1": 1}

    async def test_a_new_stream_created_at_its_likely_version_is_not_updated_again(
        self, store: EventStore
    ) -> None:
        """#12: a stream the lock creates at the version its writes then reach is written
        once (its row inserted, never updated); one the writes leave elsewhere is set right by
        one statement before the commit (``settle_versions``), the others not touched."""
        assert isinstance(store, PostgresEventStore)
        streams = ["client-u1", "client-u2", "client-u3"]
        updated = (
            "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'es_streams'::regclass"
        )
        async with store._pool.acquire() as conn, conn.transaction():
            uow = PostgresUnitOfWork(conn)
            assert await uow.lock_streams(streams, likely=dict.fromkeys(streams, 1)) == {
                s: 0 for s in streams
            }
            for s in streams[:2]:
                uow.stage(event(s, 1), topic=TOPIC, submission_hash=None)
            await uow.commit()
            assert await conn.fetchval(updated) == 0
            await uow.settle_versions()
            assert await conn.fetchval(updated) == 1  # client-u3, nothing written to it
            rows = await conn.fetch(
                "SELECT stream_id, version FROM es_streams WHERE stream_id = ANY($1::text[])",
                streams,
            )
        assert dict(rows) == {"client-u1": 1, "client-u2": 1, "client-u3": 0}

    async def test_a_group_begins_with_its_new_streams_in_one_statement(
        self, store: EventStore
    ) -> None:
        """#12: a group's first statement begins its transaction and takes its streams (one
        round trip, where ``BEGIN`` was one of its own): created, they are the group's at
        version 0 and held until it commits; streams that existed are locked by that same
        statement, in the one sorted pass, and only their versions read by a second one."""
        assert isinstance(store, PostgresEventStore)
        old = event("client-b-old", 1)
        await _write_all(store, [old])
        queries: list[str] = []

        def log(record: Any) -> None:
            queries.append(record.query)

        async with store.shared_transaction() as shared:
            conn = shared._conn
            conn.add_query_logger(log)
            try:
                await shared.lock_streams(["client-b2", "client-b1"])
                await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after
                assert len(queries) == 1, queries
                assert queries[0].startswith("BEGIN;"), queries
                assert shared.held_versions == {"client-b1": 0, "client-b2": 0}
                await _append(shared, event("client-b1", 1))
            finally:
                conn.remove_query_logger(log)
            waiting = asyncio.create_task(_lock_elsewhere(store, ["client-b1", "client-b2"]))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # created by the group: held until it commits
        assert await asyncio.wait_for(waiting, timeout=10) == {"client-b1": 1, "client-b2": 0}
        queries.clear()
        async with store.shared_transaction() as shared:
            conn = shared._conn
            conn.add_query_logger(log)
            try:
                await shared.lock_streams(["client-b3", old.stream_id])
                await asyncio.sleep(0.05)
            finally:
                conn.remove_query_logger(log)
            assert len(queries) == 2, queries
            assert queries[0].startswith("BEGIN;"), queries
            assert "FOR " not in queries[1]  # a read: the first statement locked them
            assert shared.held_versions == {"client-b3": 0, old.stream_id: 1}
            waiting = asyncio.create_task(_lock_elsewhere(store, [old.stream_id]))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # the stream that existed is locked too
        assert await asyncio.wait_for(waiting, timeout=10) == {old.stream_id: 1}

    async def test_a_group_that_raises_or_is_cancelled_stores_nothing(
        self, store: EventStore
    ) -> None:
        """The group's transaction, begun by its first statement, is rolled back when the
        group raises or is cancelled (as asyncpg's ``transaction()`` did): nothing stored, no
        stream created or left locked, and the connection goes back to the pool idle."""
        assert isinstance(store, PostgresEventStore)

        async def failing_group() -> None:
            async with store.shared_transaction() as shared:
                await shared.lock_streams(["client-r1"])
                async with shared.isolated():
                    await _append(shared, event("client-r1", 1))
                raise RuntimeError("the group fails")

        with pytest.raises(RuntimeError, match="the group fails"):
            await failing_group()
        started = asyncio.Event()

        async def cancelled_group() -> None:
            async with store.shared_transaction() as shared:
                await shared.lock_streams(["client-r2"])
                await _append(shared, event("client-r2", 1))
                started.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(cancelled_group())
        await asyncio.wait_for(started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for stream in ("client-r1", "client-r2"):
            assert await store.read_stream(stream) == []
        # Neither stream exists nor is held: another writer creates both at once.
        locked = await asyncio.wait_for(_lock_elsewhere(store, ["client-r1", "client-r2"]), 5)
        assert locked == {"client-r1": 0, "client-r2": 0}
        async with store._pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM es_streams WHERE stream_id LIKE 'client-r%'"
                )
                == 2
            )

    async def test_stream_ids_are_sent_as_constants_that_hold_them_exactly(
        self, store: EventStore
    ) -> None:
        """The group's first statement carries its stream ids as escaped constants: each
        reads back as the very text, with ``standard_conforming_strings`` on or off, for
        quotes, backslashes, ``$``, controls and any Unicode; a NUL is refused."""
        assert isinstance(store, PostgresEventStore)
        rng = random.Random(12)
        alphabet = "'\\\"$;-_/ aEe\n\t\r\x01\x7fé€😀\u2028"
        values = ["", "'", "\\", "\\'", "''", "E'x'", "'); DROP TABLE es_events; --"]
        values += ["".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(300)]
        async with store._pool.acquire() as conn:
            for setting in ("on", "off"):
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL standard_conforming_strings = {setting}")
                    for value in values:
                        assert await conn.fetchval(f"SELECT {_text_literal(value)}") == value
        with pytest.raises(ValueError, match="NUL"):
            _text_literal("a\x00b")
        odd = ["client-it's", "client-back\\slash", "client-E'\\''"]
        queries: list[str] = []

        def log(record: Any) -> None:
            queries.append(record.query)

        async with store.shared_transaction() as shared:
            shared._conn.add_query_logger(log)
            try:
                await shared.lock_streams(odd)
                await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after
            finally:
                shared._conn.remove_query_logger(log)
            assert shared.held_versions == dict.fromkeys(odd, 0)
        # Ids outside the plain characters never reach statement text: the escaping is a
        # second guard, the parameterised statements take them.
        assert queries[0] == "BEGIN", queries
        assert not any("it''s" in q or "it\\'s" in q for q in queries), queries
        async with store._pool.acquire() as conn:
            stored = await conn.fetch(
                "SELECT stream_id FROM es_streams WHERE stream_id = ANY($1::text[])", odd
            )
        assert sorted(r["stream_id"] for r in stored) == sorted(odd)


async def _lock_elsewhere(store: PostgresEventStore, streams: list[str]) -> dict[str, int]:
    async with store.unit_of_work() as uow:
        return await uow.lock_streams(streams)


async def _write_all(store: EventStore, events: list[RecordedEvent]) -> None:
    async with store.unit_of_work() as uow:
        await uow.lock_streams([e.stream_id for e in events])
        for e in events:
            uow.stage(e, topic=TOPIC, submission_hash=None)
        await uow.commit()


async def _write_then_raise(store: EventStore, written: RecordedEvent) -> None:
    """A unit of work that creates its stream at a likely version, writes, then fails."""
    async with store.unit_of_work() as uow:
        await uow.lock_streams([written.stream_id], likely={written.stream_id: 1})
        uow.stage(written, topic=TOPIC, submission_hash=None)
        await uow.commit()
        raise RuntimeError("the caller failed")


async def _append(shared: SharedTransaction, *events: RecordedEvent) -> dict[str, int]:
    """One unit of work in a shared transaction; the versions its lock answered."""
    async with shared.unit_of_work() as uow:
        versions = await uow.lock_streams(sorted({e.stream_id for e in events}))
        for e in events:
            uow.stage(e, topic=TOPIC, submission_hash=None)
        await uow.commit()
    return versions


async def _lost_race_retry_then_bug(
    shared: SharedTransaction, taken: uuid.UUID, kept: RecordedEvent
) -> None:
    """A caller whose first write loses a race for an event id, whose retry writes, and
    which then fails."""
    async with shared.isolated():
        with pytest.raises(ConcurrencyError):
            await _append(shared, event("client-g2", 1, event_id=taken))
        assert await _append(shared, kept) == {"client-g2": 0}
        raise RuntimeError("a bug after the write")


async def _write_then_fail(shared: SharedTransaction, written: RecordedEvent) -> None:
    async with shared.isolated():
        await _append(shared, written)
        raise RuntimeError("the nested scope fails")


class _QuerySpy:
    """A connection that notes the queries it fetches and passes everything on."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.queries: list[str] = []

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.queries.append(query)
        return await self._conn.fetch(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.integration
async def test_the_rows_columns_are_the_events_own(infra: Infra) -> None:
    """The write reads an event's indexed columns from the envelope it stores (#12): every
    column, the outbox rows (in staging order, with their topic and key) and the streams'
    versions are the staged events' own values, on a session whose time zone and date style
    are not UTC and ISO (a time read in the session's zone would be off by 13:45)."""
    url = infra.database_url(unique("es_"))
    await ensure_database(url)
    conn = await asyncpg.connect(
        url, server_settings={"TimeZone": "Pacific/Chatham", "DateStyle": "SQL, DMY"}
    )
    try:
        await migrate(
            conn, "eventstore", load_migrations("branchline_shared.eventstore.migrations")
        )
        actor = Actor(id="s-1", role="teller")
        common: dict[str, Any] = {"source": "test", "actor": actor}
        events = [
            RecordedEvent(
                event_id=uuid.uuid4(),
                type="client.registered",
                occurred_at=datetime.fromisoformat("2026-11-22T09:00:00.123456+08:00"),
                recorded_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
                client_id="C-1",
                stream_id="client-C-1",
                stream_version=1,
                data={"client_type": "individual", "rm_id": "rm-1", "note": 'é "q" \\ x'},
                **common,
            ),
            RecordedEvent(
                event_id=uuid.uuid4(),
                type="product.suspended",
                occurred_at=datetime(1900, 1, 1, tzinfo=UTC),
                recorded_at=datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                product_id="P-9",
                stream_id="product-P-9",
                stream_version=1,
                **common,
            ),
            RecordedEvent(
                event_id=uuid.uuid4(),
                type="client.contacted",
                occurred_at=datetime(2026, 2, 28, 23, 59, 59, 1, tzinfo=UTC),
                recorded_at=datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=UTC),
                client_id="C-1",
                stream_id="client-C-1",
                stream_version=2,
                **common,
            ),
            RecordedEvent(
                event_id=uuid.uuid4(),
                type="staff.registered",
                occurred_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
                recorded_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
                staff_id="S-1",
                stream_id="staff-S-1",
                stream_version=1,
                **common,
            ),
        ]
        hashes = [b"h1", None, b"\x00\xff", None]
        topics = ["t.one", "t.two", "t.one", "t.three"]
        async with conn.transaction():
            uow = PostgresUnitOfWork(conn)
            await uow.lock_streams(sorted({e.stream_id for e in events}))
            for e, h, t in zip(events, hashes, topics, strict=True):
                uow.stage(e, topic=t, submission_hash=h)
            positions = await uow.commit()
        rows = await conn.fetch(
            "SELECT event_id, stream_id, stream_version, type, client_id, occurred_at, "
            "recorded_at, submission_hash, envelope::text AS envelope, global_position "
            "FROM es_events ORDER BY global_position"
        )
        assert [
            (r["event_id"], r["stream_id"], r["stream_version"], r["type"], r["client_id"])
            for r in rows
        ] == [(e.event_id, e.stream_id, e.stream_version, e.type, e.client_id) for e in events]
        assert [(r["occurred_at"], r["recorded_at"]) for r in rows] == [
            (e.occurred_at, e.recorded_at) for e in events
        ]
        assert [r["submission_hash"] for r in rows] == hashes
        assert [orjson.loads(r["envelope"]) for r in rows] == [
            orjson.loads(e.model_dump_json()) for e in events
        ]
        assert [r["global_position"] for r in rows] == [p.global_position for p in positions]
        assert [(p.event_id, p.stream_id, p.stream_version) for p in positions] == [
            (e.event_id, e.stream_id, e.stream_version) for e in events
        ]
        outbox = await conn.fetch("SELECT event_id, topic, message_key FROM es_outbox ORDER BY id")
        assert [tuple(r) for r in outbox] == [
            (e.event_id, t, e.subject_id) for e, t in zip(events, topics, strict=True)
        ]
        versions = await conn.fetch("SELECT stream_id, version FROM es_streams ORDER BY stream_id")
        assert [tuple(r) for r in versions] == [
            ("client-C-1", 2),
            ("product-P-9", 1),
            ("staff-S-1", 1),
        ]
    finally:
        await conn.close()
