"""The rebuild's apply path and swap (#12), against PostgreSQL without a broker: a batch
applies in one transaction and, when one event fails, again with a savepoint per event (the
failing event leaves no trace, not in the bulk-written applied record nor the timeline); an
event delivered twice is applied once; the swap waits for the swap lock a bounded time,
retries, and reports a lock that stays busy instead of stalling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters import pg_schemas, rebuild_target
from branchline_followup.adapters.rebuild_target import (
    PostgresRebuildTarget,
    SwapAbandoned,
    SwapLockBusy,
)
from branchline_followup.adapters.topic_replay import ReplayedMessage
from branchline_followup.application import rebuild as rebuild_module
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.rebuild import RebuildResult, rebuild_read_models
from branchline_followup.application.reprojection import REPROJECTIONS
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded
from branchline_shared.kafka.wire import event_headers
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import (
    History,
    followup_db,
    generate_history,
    now_utc,
    snapshot,
    wire,
)
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class MemorySource:
    """The log being replayed, from memory: what the topics would deliver, in order; with
    ``store``, each message carries its event's place there, as a relay sends it."""

    def __init__(
        self, events: Sequence[RecordedEvent], *, store: Sequence[RecordedEvent] = ()
    ) -> None:
        self._values = [wire(e) for e in events]
        # each event's place in its store (``store``: its events by recorded time)
        place = {
            e.event_id: n + 1 for n, e in enumerate(sorted(store, key=lambda e: e.recorded_at))
        }
        self._headers = [event_headers(e, place[e.event_id]) if store else [] for e in events]
        self._read = False

    async def start(self) -> int:
        return len(self._values)

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        if self._read:
            return
        self._read = True
        for offset, (value, headers) in enumerate(zip(self._values, self._headers, strict=True)):
            yield ReplayedMessage("intake", 0, offset, 0, value, headers)

    async def extend_to_current_end(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


def history() -> History:
    h = History()
    at = now_utc() - timedelta(hours=3)
    for n in range(4):
        h.registered(f"C-{n}", at + timedelta(minutes=n), rm_id="rm-1")
        h.visit(f"C-{n}", f"V-{n}", at + timedelta(minutes=10 + n))
    return h


async def run_rebuild(
    settings: BranchlineSettings,
    events: Sequence[RecordedEvent],
    *,
    store: Sequence[RecordedEvent] = (),
    **target: Any,
) -> RebuildResult:
    admin = await open_pool(
        pg_schemas.with_search_path(settings.followup_database_url, "public"),
        min_size=1,
        max_size=2,
    )
    try:
        return await rebuild_read_models(
            target=PostgresRebuildTarget(admin, settings.followup_database_url, **target),
            source=MemorySource(events, store=store),
            policy=policy_from_settings(settings),
            batch_size=5,
            keep_retired=True,
        )
    finally:
        await admin.close()


async def rebuild_schemas(db: asyncpg.Connection[Any]) -> list[str]:
    rows = await db.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", pg_schemas.REBUILD_PREFIX + "%"
    )
    return [r["nspname"] for r in rows]


async def _swap_attempts_seen(db: asyncpg.Connection[Any], attempts: int) -> None:
    """Returns once ``attempts`` of the rebuild's requests for the exclusive swap lock have
    timed out: each shows as an ungranted advisory lock until its lock timeout."""
    seen, waiting = 0, False
    while seen < attempts:
        now = bool(
            await db.fetchval(
                "SELECT count(*) FROM pg_locks "
                "WHERE locktype = 'advisory' AND objsubid = 1 AND NOT granted"
            )
        )
        seen += waiting and not now
        waiting = now
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def live_writer(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A live transaction holding the swap lock shared, as every live writer does."""
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        async with conn.transaction():
            await pg_schemas.hold_swap_lock_shared(conn)
            yield conn
    finally:
        await conn.close()


async def test_a_failing_event_leaves_no_trace_and_a_repeated_one_is_applied_once(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(infra, tmp_path)
    h = history()
    failing = h.events[5]  # in the second batch of five
    real_project = rebuild_module.project

    async def project(uow: Any, event: Decoded, *args: Any, **kwargs: Any) -> bool:
        # its writes are made, then undone
        applied = await real_project(uow, event, *args, **kwargs)
        if event.envelope.event_id == failing.event_id:
            raise ValueError("a projection failure (what the live worker dead-letters)")
        return applied

    monkeypatch.setattr(rebuild_module, "project", project)
    events = [*h.events, h.events[0], h.events[6]]  # two published twice by a relay
    async with followup_db(settings) as db:
        result = await run_rebuild(settings, events)
        assert (result.applied, result.skipped) == (len(events) - 1, 1)
        applied = await db.fetch("SELECT event_id FROM fu_read.fu_applied_events")
        assert sorted(r["event_id"] for r in applied) == sorted(
            e.event_id for e in h.events if e is not failing
        )
        timeline = await db.fetch("SELECT event_id FROM fu_read.fu_client_timeline")
        assert failing.event_id not in {r["event_id"] for r in timeline}
        assert len(timeline) == len(h.events) - 1


def generated() -> list[RecordedEvent]:
    history = generate_history(12, end=now_utc() - timedelta(hours=1), span=timedelta(days=30))
    return sorted(history.events, key=lambda e: e.recorded_at)


async def test_what_the_rebuild_remembers_is_undone_with_a_failing_event(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild keeps facts, open tasks and the journal's places in memory across its
    batches (#12): an event that fails after changing them leaves the same read models as a
    history without it."""
    settings = make_settings(infra, tmp_path)
    events = generated()
    # one that changes a client's facts and closes a task: a visit's close
    failing = next(e for e in events[len(events) // 2 :] if e.type == "visit.closed")
    without = [e for e in events if e is not failing]
    real_project = rebuild_module.project

    async def project(uow: Any, event: Decoded, *args: Any, **kwargs: Any) -> bool:
        applied = await real_project(uow, event, *args, **kwargs)
        if event.envelope.event_id == failing.event_id:
            raise ValueError("a projection failure (what the live worker dead-letters)")
        return applied

    async with followup_db(settings) as db:
        await run_rebuild(settings, without, store=events)
        expected = await snapshot(db)
        await run_rebuild(settings, events, store=events)
        whole = await snapshot(db)
        monkeypatch.setattr(rebuild_module, "project", project)
        result = await run_rebuild(settings, events, store=events)
        assert result.skipped == 1
        assert await snapshot(db) == expected
    assert {k: v for k, v in whole.items() if k != "fu_applied_events"} != {
        k: v for k, v in expected.items() if k != "fu_applied_events"
    }, "the failing event changes more than its applied record"


async def test_a_late_event_in_the_replayed_log_is_projected_as_in_order(
    infra: Infra, tmp_path: Path
) -> None:
    """A log that delivers a client's event after later ones (a reconcile repair) makes the
    rebuild project the client again (ADR-0014) from the journal it keeps in memory and
    writes in bulk (#12): the result is the in-order rebuild's."""
    settings = make_settings(infra, tmp_path)
    events = generated()
    client = events[0].client_id
    own = [e for e in events if e.client_id == client]
    late = own[0]  # the client's registration, delivered after all its other events
    shuffled = [e for e in events if e is not late] + [late]
    async with followup_db(settings) as db:
        await run_rebuild(settings, events, store=events)
        in_order = await snapshot(db)
        before = REPROJECTIONS._value.get()
        await run_rebuild(settings, shuffled, store=events)
        assert REPROJECTIONS._value.get() == before + 1
        assert await snapshot(db) == in_order
    assert len(own) > 5


async def test_past_its_bound_the_rebuild_reads_what_it_no_longer_remembers(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``REMEMBERED_CLIENTS`` the rebuild forgets facts and open tasks after each batch
    and reads them back when asked (bounded memory): the same read models, a late event's
    re-projection included."""
    settings = make_settings(infra, tmp_path)
    events = generated()
    late = next(e for e in events if e.client_id == events[0].client_id)
    shuffled = [e for e in events if e is not late] + [late]
    async with followup_db(settings) as db:
        await run_rebuild(settings, events, store=events)
        remembered = await snapshot(db)
        monkeypatch.setattr(rebuild_target, "REMEMBERED_CLIENTS", 2)
        reads = 0
        real_fetch = rebuild_target.read_models.fetch_client

        async def fetch_client(conn: Any, client_id: str) -> Any:
            nonlocal reads
            reads += 1
            return await real_fetch(conn, client_id)

        monkeypatch.setattr(rebuild_target.read_models, "fetch_client", fetch_client)
        await run_rebuild(settings, shuffled, store=events)
        assert await snapshot(db) == remembered
    assert reads > 0


async def test_past_its_bounds_the_rebuild_reads_applied_ids_task_clients_and_places_back(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``REMEMBERED_EVENTS`` the rebuild forgets the applied event ids, and past
    ``REMEMBERED_CLIENTS`` the tasks' clients and the journal's latest places too, after each
    batch (bounded memory on a rebuild of millions of events); what it forgot is read back
    from its schema, never taken as absent: an event published twice, far apart, is applied
    once, and an event arriving late is still found late (re-projected)."""
    settings = make_settings(infra, tmp_path)
    events = generated()
    late = next(e for e in events if e.client_id == events[0].client_id)
    shuffled = [e for e in events if e is not late] + [late]
    twice = [*shuffled, events[1], events[7]]  # published again by a relay, batches later
    real_project = rebuild_module.project
    projected: list[RecordedEvent] = []

    async def project(uow: Any, event: Decoded, *args: Any, **kwargs: Any) -> bool:
        applied = await real_project(uow, event, *args, **kwargs)
        if applied:
            projected.append(event.envelope)
        return applied

    monkeypatch.setattr(rebuild_module, "project", project)
    async with followup_db(settings) as db:
        await run_rebuild(settings, twice, store=events)
        remembered = await snapshot(db)
        assert len(projected) == len(events)  # the repeated two applied once
        projected.clear()
        monkeypatch.setattr(rebuild_target, "REMEMBERED_CLIENTS", 2)
        monkeypatch.setattr(rebuild_target, "REMEMBERED_EVENTS", 2)
        lookups = {"applied": 0, "places": 0}
        real_places = rebuild_target.client_journal.latest_places

        async def latest_places(conn: Any, pairs: Any) -> Any:
            lookups["places"] += 1
            return await real_places(conn, pairs)

        real_learn = rebuild_target._BulkWrites.learn_applied

        async def learn_applied(bulk: Any, conn: Any, event_ids: Any) -> None:
            lookups["applied"] += not bulk.all_applied
            await real_learn(bulk, conn, event_ids)

        monkeypatch.setattr(rebuild_target.client_journal, "latest_places", latest_places)
        monkeypatch.setattr(rebuild_target._BulkWrites, "learn_applied", learn_applied)
        before = REPROJECTIONS._value.get()
        await run_rebuild(settings, twice, store=events)
        assert REPROJECTIONS._value.get() == before + 1  # the late event found late
        assert len(projected) == len(events)
        assert await snapshot(db) == remembered
    assert lookups["applied"] > 0
    assert lookups["places"] > 0


async def test_the_swap_retries_a_busy_lock_then_swaps_in(infra: Infra, tmp_path: Path) -> None:
    settings = make_settings(infra, tmp_path)
    h = history()
    async with followup_db(settings) as db:
        async with live_writer(settings):
            rebuilding = asyncio.create_task(
                run_rebuild(
                    settings,
                    h.events,
                    swap_lock_timeout_s=0.2,
                    swap_lock_attempts=50,
                    swap_retry_pause_s=0.1,
                )
            )
            # the live transaction outlasts two attempts, however long the replay before the
            # swap takes on a loaded machine (a fixed sleep of 1.5 s saw one attempt there)
            await asyncio.wait_for(_swap_attempts_seen(db, 2), timeout=60)
            assert not rebuilding.done()
        result = await asyncio.wait_for(rebuilding, timeout=30)
        assert result.swap_lock_waits >= 2
        assert result.retired is not None
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_applied_events") == len(h.events)


async def test_a_swap_lock_that_stays_busy_is_reported_and_nothing_is_swapped(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)
    async with followup_db(settings) as db:
        async with live_writer(settings) as writer:
            await writer.execute("INSERT INTO fu_read.fu_staff (staff_id) VALUES ('live-1')")
            started = asyncio.get_running_loop().time()
            with pytest.raises(SwapLockBusy, match="3 attempts"):
                await run_rebuild(
                    settings,
                    history().events,
                    swap_lock_timeout_s=0.2,
                    swap_lock_attempts=3,
                    swap_retry_pause_s=0.1,
                )
            assert asyncio.get_running_loop().time() - started < 20
            # the live writer was never in the way of itself: it goes on and commits
            await writer.execute("INSERT INTO fu_read.fu_staff (staff_id) VALUES ('live-2')")
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_staff") == 2
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_applied_events") == 0
        assert (
            await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'fu_retired_%'")
            == 0
        )
        # the schema it filled is dropped: nothing resumes from it (#12)
        assert not await rebuild_schemas(db)


class SlowTail(MemorySource):
    """A broker that answers the swap's catch-up late (the benchmark's stall)."""

    def __init__(self, events: Sequence[RecordedEvent], delay_s: float) -> None:
        super().__init__(events)
        self._delay_s = delay_s
        self._calls = 0

    async def extend_to_current_end(self) -> int:
        self._calls += 1
        if self._calls > 1:  # the first is the catch-up before the swap, without the lock
            await asyncio.sleep(self._delay_s)
        return 0


async def test_a_swap_idle_while_holding_the_lock_is_ended_and_frees_the_live_writers(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)
    async with followup_db(settings) as db:
        admin = await open_pool(
            pg_schemas.with_search_path(settings.followup_database_url, "public"),
            min_size=1,
            max_size=2,
        )
        try:
            rebuilding = asyncio.create_task(
                rebuild_read_models(
                    target=PostgresRebuildTarget(
                        admin, settings.followup_database_url, swap_idle_timeout_s=0.5
                    ),
                    source=SlowTail(history().events, delay_s=4.0),
                    policy=policy_from_settings(settings),
                    batch_size=5,
                )
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not await db.fetchval(
                "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' "
                "AND mode = 'ExclusiveLock' AND granted"
            ):
                if rebuilding.done():
                    rebuilding.result()  # its error, if it failed before the swap
                assert loop.time() < deadline
                await asyncio.sleep(0.02)
            swapping = loop.time()
            async with live_writer(settings):  # waits for the swap lock
                freed = loop.time() - swapping
            with pytest.raises(SwapAbandoned, match="idle"):
                await asyncio.wait_for(rebuilding, timeout=30)
        finally:
            await admin.close()
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_applied_events") == 0
        assert not await rebuild_schemas(db)
    # PostgreSQL ended the idle swap after 0.5 s, not once the broker answered (4 s)
    assert freed < 3.0


_INDEXES_OF = """
SELECT tablename, indexname, replace(indexdef, ' ON ' || schemaname || '.', ' ON ')
FROM pg_indexes WHERE schemaname = $1 ORDER BY tablename, indexname
"""
_CONSTRAINTS_OF = """
SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE k.connamespace = $1::regnamespace ORDER BY c.relname, k.conname
"""
_TRIGGERS_OF = """
SELECT c.relname, t.tgname, replace(pg_get_triggerdef(t.oid), ' ON ' || $1 || '.', ' ON ')
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal ORDER BY c.relname, t.tgname
"""


async def structure(db: asyncpg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """A schema's indexes, constraints and triggers, by name, as their definitions read (the
    schema's own name left out)."""
    return {
        "indexes": [tuple(r) for r in await db.fetch(_INDEXES_OF, schema)],
        "constraints": [tuple(r) for r in await db.fetch(_CONSTRAINTS_OF, schema)],
        "triggers": [tuple(r) for r in await db.fetch(_TRIGGERS_OF, schema)],
    }


async def test_the_swapped_schema_has_the_migrated_indexes_and_constraints_by_name(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)
    async with followup_db(settings) as db:
        migrated = await structure(db, pg_schemas.LIVE_SCHEMA)
        result = await run_rebuild(settings, history().events)
        assert result.retired is not None
        assert await structure(db, result.retired) == migrated  # the old one, as migrated
        # the same names too: a later migration's DROP INDEX or IF NOT EXISTS finds them
        assert await structure(db, pg_schemas.LIVE_SCHEMA) == migrated


class Watched(MemorySource):
    """The log, with ``during(db)`` run once its first message was applied: the load is under
    way (the rebuild's schema exists, its first batch written)."""

    def __init__(
        self,
        events: Sequence[RecordedEvent],
        db: asyncpg.Connection[Any],
        during: Any,
    ) -> None:
        super().__init__(events)
        self._db = db
        self._during = during

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        first = True
        async for message in super().messages():
            yield message
            if first:
                first = False
                await self._during(self._db)


async def rebuild_from(settings: BranchlineSettings, source: MemorySource) -> RebuildResult:
    admin = await open_pool(
        pg_schemas.with_search_path(settings.followup_database_url, "public"),
        min_size=1,
        max_size=2,
    )
    try:
        return await rebuild_read_models(
            target=PostgresRebuildTarget(admin, settings.followup_database_url),
            source=source,
            policy=policy_from_settings(settings),
            batch_size=5,
            keep_retired=True,
        )
    finally:
        await admin.close()


async def test_the_deferred_indexes_are_absent_while_loading_and_built_before_the_swap(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)
    async with followup_db(settings) as db:
        live = {r[1]: r for r in await db.fetch(_INDEXES_OF, pg_schemas.LIVE_SCHEMA)}
        # every deferred index is one the migrations make, none unique
        assert live.keys() >= rebuild_target.DEFERRED_INDEXES
        assert not any("UNIQUE" in live[n][2] for n in rebuild_target.DEFERRED_INDEXES)
        loading: set[str] = set()

        async def look(db: asyncpg.Connection[Any]) -> None:
            (schema,) = await rebuild_schemas(db)
            loading.update(r[1] for r in await db.fetch(_INDEXES_OF, schema))

        await rebuild_from(settings, Watched(history().events, db, look))
        assert loading == live.keys() - rebuild_target.DEFERRED_INDEXES
        after = {r[1] for r in await db.fetch(_INDEXES_OF, pg_schemas.LIVE_SCHEMA)}
        assert after == live.keys()
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_applied_events") == len(
            history().events
        )


async def test_an_index_a_migration_adds_during_the_load_is_in_the_swapped_schema(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)

    async def migrate(db: asyncpg.Connection[Any]) -> None:
        await db.execute("CREATE INDEX CONCURRENTLY fu_tasks_by_kind ON fu_read.fu_tasks (kind)")

    async with followup_db(settings) as db:
        await rebuild_from(settings, Watched(history().events, db, migrate))
        assert await db.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'fu_read' "
            "AND indexname = 'fu_tasks_by_kind'"
        ) == ("CREATE INDEX fu_tasks_by_kind ON fu_read.fu_tasks USING btree (kind)")


async def test_a_failing_index_build_swaps_nothing_and_drops_the_rebuilds_schema(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)

    async def migrate(db: asyncpg.Connection[Any]) -> None:
        # a column the rebuild's copy lacks: its index cannot be built there
        await db.execute("ALTER TABLE fu_read.fu_staff ADD COLUMN nickname text")
        await db.execute("INSERT INTO fu_read.fu_staff (staff_id) VALUES ('live-1')")
        await db.execute("CREATE INDEX fu_staff_by_nickname ON fu_read.fu_staff (nickname)")

    async with followup_db(settings) as db:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await rebuild_from(settings, Watched(history().events, db, migrate))
        assert not await rebuild_schemas(db)
        assert (
            await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'fu_retired_%'")
            == 0
        )
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_applied_events") == 0
        assert await db.fetchval("SELECT staff_id FROM fu_read.fu_staff") == "live-1"


class FailingTail(SlowTail):
    """A broker that fails the swap's catch-up, late."""

    async def extend_to_current_end(self) -> int:
        await super().extend_to_current_end()
        if self._calls > 1:
            raise OSError("the broker went away")
        return 0


async def test_a_swap_whose_session_was_ended_unread_when_the_broker_fails_is_abandoned(
    infra: Infra, tmp_path: Path
) -> None:
    """As above, PostgreSQL ends the swap idle holding the lock (25P03: a FATAL error, then
    the close); here a proxy holds the close back, and the broker fails the swap's catch-up
    (4 s) in between. The swap's rollback, sent between the two, failed with
    asyncpg's ``InternalClientError``, which the rollback did not take for the lost
    connection it is: the rebuild ended with that instead of :class:`SwapAbandoned` (#12)."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.proxy import cuttable

    settings = make_settings(infra, tmp_path)
    target = urlsplit(settings.followup_database_url)
    async with (
        followup_db(settings) as db,
        # The swap's close is held for good (a fixed 6 s left the 4 s catch-up and the rollback
        # a 2.5 s margin: a deadline on a loaded machine, not a condition).
        cuttable(target.hostname or "127.0.0.1", target.port or 5432, hold_closes=True) as proxy,
    ):
        via_proxy = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))
        admin = await open_pool(
            pg_schemas.with_search_path(settings.followup_database_url, "public"),
            min_size=1,
            max_size=2,
        )
        try:
            rebuilding = asyncio.create_task(
                rebuild_read_models(
                    target=PostgresRebuildTarget(admin, via_proxy, swap_idle_timeout_s=0.5),
                    source=FailingTail(history().events, delay_s=4.0),
                    policy=policy_from_settings(settings),
                    batch_size=5,
                )
            )
            async with asyncio.timeout(30):
                while not await db.fetchval(
                    "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND mode = 'ExclusiveLock' AND granted"
                ):
                    if rebuilding.done():
                        rebuilding.result()  # its error, if it failed before the swap
                    await asyncio.sleep(0.02)
            passed = proxy.closes_passed
            with pytest.raises(SwapAbandoned, match="idle") as abandoned:
                async with asyncio.timeout(30):
                    await rebuilding
            assert isinstance(abandoned.value.__cause__, OSError)  # the broker's failure
            assert proxy.closes_passed == passed  # abandoned before the swap's close came
        finally:
            await admin.close()
        assert await db.fetchval("SELECT count(*) FROM fu_read.fu_applied_events") == 0
        assert not await rebuild_schemas(db)
