"""Events stored in intake's store and published by the real outbox relay, with where the
broker put each: what a consumer's self-check judges by (shared by its tests and
``bench/profile_self_check.py``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import closed, start_or_close
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.support.events import recorded_event

PER_TRANSACTION = 1_000


async def published(
    settings: BranchlineSettings, count: int, *, first: int = 0, analyze: bool = False
) -> dict[uuid.UUID, tuple[int, int]]:
    """``count`` registrations stored in intake's store (clients ``C-{first}``...) and
    published by the real relay, every row of the store dated published an hour ago (far
    beyond any grace period); where the broker put each of the store's rows (earlier calls'
    too). ``analyze``: the outbox analysed afterwards, as autovacuum would after a while."""
    topics = declare_topics(settings)
    await ensure_topics(settings.kafka_bootstrap, topics.all())
    await migrate_database(settings.followup_database_url, [EVENT_STORE_MIGRATIONS])
    await migrate_database(settings.intake_database_url, [EVENT_STORE_MIGRATIONS])
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    producer = make_producer(settings, client_id="test-relay")
    await start_or_close(producer)  # as the services' relays start and stop (#12)
    at = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    try:
        store = PostgresEventStore(pool)
        for start in range(first, first + count, PER_TRANSACTION):
            async with store.unit_of_work() as uow:
                for n in range(start, min(start + PER_TRANSACTION, first + count)):
                    event = recorded_event(
                        "client.registered",
                        {"client_type": "individual", "rm_id": "rm-7"},
                        at=at,
                        client_id=f"C-{n}",
                        branch_id="BR-001",
                    )
                    uow.stage(event, topic=topics.intake_events.name, submission_hash=None)
                await uow.commit()
        relay = OutboxRelay(pool=pool, producer=producer, store_name="intake")
        while await relay.publish_once():
            pass
        await pool.execute("UPDATE es_outbox SET published_at = now() - interval '1 hour'")
        if analyze:
            await pool.execute("ANALYZE es_outbox")
        rows = await pool.fetch(
            "SELECT event_id, published_partition, published_offset FROM es_outbox"
        )
    finally:
        await closed(producer)
        await pool.close()
    return {r["event_id"]: (r["published_partition"], r["published_offset"]) for r in rows}
