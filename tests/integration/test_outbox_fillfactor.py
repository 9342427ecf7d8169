"""The outbox leaves room on each page for its rows' publish (#12, eventstore migration 009):
a row marked published gets its new version on its own page, where before a full page sent
it to another one (a bigger UPDATE record and a LOCK record more in the WAL). Upgraded in
place: rows written before the migration are published as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from branchline_shared.eventstore.postgres import PostgresEventStore, PostgresOutbox
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database, open_pool
from branchline_shared.settings import BranchlineSettings
from tests.support.events import recorded_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EVENTS = 400  # several full pages of outbox rows at the default fillfactor


async def _write(store: PostgresEventStore, first: int) -> None:
    now = datetime.now(UTC)
    for start in range(first, first + EVENTS, 100):
        async with store.unit_of_work() as uow:
            for i in range(start, start + 100):
                uow.stage(
                    recorded_event(
                        "client.registered",
                        {"client_type": "individual", "rm_id": "rm-7"},
                        at=now,
                        client_id=f"C-{i}",
                    ),
                    topic="intake.events",
                    submission_hash=None,
                )
            await uow.commit()


async def _publish_all(conn: asyncpg.Connection[Any], outbox: PostgresOutbox) -> tuple[int, int]:
    """Publish every pending row as the relay marks them; (rows marked, rows whose new
    version left their page)."""
    before = dict(await conn.fetch("SELECT id, (ctid::text::point)[0] FROM es_outbox"))
    marked = 0
    while pending := await outbox.pending(150):
        await outbox.mark_published(
            [p.outbox_id for p in pending], [(0, marked + k) for k in range(len(pending))]
        )
        marked += len(pending)
    after = dict(await conn.fetch("SELECT id, (ctid::text::point)[0] FROM es_outbox"))
    moved = sum(1 for row, page in before.items() if after[row] != page)
    return marked, moved


async def test_a_published_row_stays_on_its_page(settings: BranchlineSettings) -> None:
    url = settings.intake_database_url
    await ensure_database(url)
    name, package = EVENT_STORE_MIGRATIONS
    migrations = load_migrations(package)
    conn = await asyncpg.connect(url)
    pool = await open_pool(url, min_size=1, max_size=2)
    try:
        await migrate(conn, name, [m for m in migrations if m.version < 9])
        store, outbox = PostgresEventStore(pool), PostgresOutbox(pool)

        # Before: full pages, so marking sends new versions to other pages (what the
        # migration is for; and the proof that this test's rows fill pages).
        await _write(store, 0)
        marked, moved = await _publish_all(conn, outbox)
        assert marked == EVENTS
        assert moved > EVENTS // 4

        # Upgraded with rows still unpublished: they are published as before.
        await _write(store, EVENTS)
        await migrate(conn, name, migrations)
        assert "fillfactor=45" in (
            await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'es_outbox'")
        )
        marked, _ = await _publish_all(conn, outbox)
        assert marked == EVENTS

        # Rows written since: every new version beside the old one.
        await _write(store, 2 * EVENTS)
        marked, moved = await _publish_all(conn, outbox)
        assert (marked, moved) == (EVENTS, 0)

        assert await outbox.backlog() == 0
        unrecorded = await conn.fetchval(
            "SELECT count(*) FROM es_outbox WHERE published_at IS NULL "
            "OR published_partition IS NULL OR published_offset IS NULL"
        )
        assert unrecorded == 0
        # The unpublished read is still the partial index's.
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT id FROM es_outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT 500"
        )
        assert "es_outbox_unpublished" in str(plan)
    finally:
        await pool.close()
        await conn.close()
