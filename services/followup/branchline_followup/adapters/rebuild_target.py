"""The PostgreSQL side of a blue/green rebuild (``application/rebuild.py`` ``RebuildTarget``):
a fresh schema ``fu_rebuild_<n>`` with empty copies of the live tables, one connection whose
``search_path`` writes it, and the swap (see :mod:`.pg_schemas` for the locks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from branchline_followup.adapters import pg_schemas
from branchline_followup.adapters.console_read_models import (
    TIMELINE_INSERT,
    apply_for_console,
    timeline_row,
)
from branchline_followup.adapters.read_models import APPLIED_INSERT, applied_row
from branchline_followup.adapters.unit_of_work import (
    PostgresFollowupUnitOfWork,
    _Activity,
    _Journal,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection, PgPool, open_pool

log = logging.getLogger(__name__)

STORE_SOURCE = "followup"
RECENT_STORE_EVENTS = timedelta(minutes=10)


class SwapLockBusy(RuntimeError):
    """The swap lock could not be taken within the bounded attempts: live writers held it
    (a long transaction, or one stuck). Nothing was swapped: the live read models are
    untouched; the rebuilt schema stays (``fu_rebuild_<n>``) until dropped or rebuilt."""


class SwapAbandoned(RuntimeError):
    """The swap's transaction sat idle holding the swap lock too long and PostgreSQL ended it
    (``idle_in_transaction_session_timeout``): nothing was swapped."""


class _BulkWrites:
    """What a rebuild writes row by row but nothing reads back while it runs (#12): the
    applied-event record and the console timeline, kept here and written once per
    transaction (``executemany``, in the order the events were applied) instead of one round
    trip per event each.

    Only the rebuild writes its schema, so the ids it applied are all known here: an event
    seen again (a relay that published twice) is found in :attr:`applied`, as the database's
    ``ON CONFLICT`` would have found it. A savepoint or transaction that rolls back takes
    back what it added (:meth:`mark` / :meth:`rollback_to`); a client's re-projection, which
    deletes the client's timeline rows before applying its events again (ADR-0014), deletes
    the ones kept here too (:meth:`clear_client`)."""

    def __init__(self) -> None:
        self.applied: set[uuid.UUID] = set()
        self._applied_rows: list[tuple[Any, ...]] = []
        self._timeline_rows: list[tuple[Any, ...]] = []

    def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        if event.event_id in self.applied:
            return False
        self.applied.add(event.event_id)
        self._applied_rows.append(applied_row(event, position))
        return True

    def timeline(self, event: RecordedEvent, client_id: str) -> None:
        self._timeline_rows.append(timeline_row(event, client_id))

    def mark(self) -> tuple[int, list[tuple[Any, ...]]]:
        # the timeline as a copy: a re-projection removes rows from its middle
        return len(self._applied_rows), list(self._timeline_rows)

    def rollback_to(self, mark: tuple[int, list[tuple[Any, ...]]]) -> None:
        applied, timeline = mark
        for row in self._applied_rows[applied:]:
            self.applied.discard(row[0])
        del self._applied_rows[applied:]
        self._timeline_rows = list(timeline)

    def clear_client(self, client_id: str) -> None:
        self._timeline_rows = [row for row in self._timeline_rows if row[0] != client_id]

    async def flush(self, conn: PgConnection) -> None:
        """Within the transaction that applied them, before it commits."""
        if self._applied_rows:
            await conn.executemany(APPLIED_INSERT, self._applied_rows)
        if self._timeline_rows:
            await conn.executemany(TIMELINE_INSERT, self._timeline_rows)
        self._applied_rows.clear()
        self._timeline_rows.clear()


class _RebuildActivity(_Activity):
    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def record_console(self, event: RecordedEvent, client_id: str) -> None:
        self._bulk.timeline(event, client_id)
        await apply_for_console(self._conn, event, client_id, timeline=False)


class _RebuildJournal(_Journal):
    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def clear_read_models(self, client_id: str) -> None:
        self._bulk.clear_client(client_id)  # as the DELETE below does in the table
        await super().clear_read_models(client_id)


class _RebuildUnitOfWork(PostgresFollowupUnitOfWork):
    """A unit writing the rebuild's schema. Only the rebuild's one connection writes it (the
    live writers write ``fu_read``), so a client lock serialises against nobody: it is not
    taken (one round trip per event less, #12); the applied record and the timeline are
    written in bulk (:class:`_BulkWrites`)."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn, pg_schemas.REBUILD_CLIENT_LOCK_CLASS)
        self._bulk = bulk
        self.activity = _RebuildActivity(conn, bulk)
        self.journal = _RebuildJournal(conn, bulk)

    async def lock_client(self, client_id: str) -> None:
        return None

    async def try_lock_client(self, client_id: str) -> bool:
        return True

    async def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        return self._bulk.mark_applied(event, position)

    async def mark_applied_all(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> set[uuid.UUID]:
        return {e.event_id for e, position in events if self._bulk.mark_applied(e, position)}

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        mark = self._bulk.mark()
        try:
            async with super().savepoint():
                yield
        except BaseException:
            self._bulk.rollback_to(mark)
            raise


class PostgresRebuildTarget:
    def __init__(
        self,
        admin_pool: PgPool,
        database_url: str,
        *,
        swap_lock_timeout_s: float = 2.0,
        swap_lock_attempts: int = 30,
        swap_retry_pause_s: float = 1.0,
        swap_idle_timeout_s: float = 60.0,
    ) -> None:
        self._admin = admin_pool
        self._database_url = database_url
        self._swap_lock_timeout_ms = max(1, int(swap_lock_timeout_s * 1000))
        self._swap_lock_attempts = swap_lock_attempts
        self._swap_retry_pause_s = swap_retry_pause_s
        self._swap_idle_timeout_ms = max(1, int(swap_idle_timeout_s * 1000))
        self.swap_lock_waits = 0
        self._bulk = _BulkWrites()
        self._number = 0
        self.schema = ""
        self.retired = ""
        self._started_at: datetime | None = None
        self._pool: PgPool | None = None
        self._conn: PgConnection | None = None
        self._release: contextlib.AsyncExitStack | None = None

    async def open(self) -> None:
        async with self._admin.acquire() as conn:
            self._number = await conn.fetchval(
                "INSERT INTO fu_rebuilds (schema_name) VALUES ('') RETURNING id"
            )
            self.schema = f"{pg_schemas.REBUILD_PREFIX}{self._number}"
            self.retired = f"{pg_schemas.RETIRED_PREFIX}{self._number}"
            self._started_at = await conn.fetchval(
                "UPDATE fu_rebuilds SET schema_name = $2 WHERE id = $1 RETURNING started_at",
                self._number,
                self.schema,
            )
            await pg_schemas.clone_schema(conn, self.schema)
        self._release = contextlib.AsyncExitStack()
        self._pool = await open_pool(
            pg_schemas.with_search_path(self._database_url, self.schema), min_size=1, max_size=1
        )
        self._release.push_async_callback(self._pool.close)
        self._conn = await self._release.enter_async_context(self._pool.acquire())

    def _connection(self) -> PgConnection:
        if self._conn is None:
            raise RuntimeError("the rebuild target is not open")
        return self._conn

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        conn = self._connection()
        mark = self._bulk.mark()
        try:
            async with conn.transaction():
                yield _RebuildUnitOfWork(conn, self._bulk)
                await self._bulk.flush(conn)
        except BaseException:
            self._bulk.rollback_to(mark)
            raise

    @contextlib.asynccontextmanager
    async def swap(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        """The swap lock, exclusively, waited for ``swap_lock_timeout_s`` at a time (#12): an
        unbounded wait queues every live writer behind it (PostgreSQL grants a shared request
        after the exclusive one waiting before it), so one long live transaction stalled the
        whole service with the rebuild. A timed-out attempt rolls back (nothing was done
        yet), lets the writers through for ``swap_retry_pause_s`` and tries again; after
        ``swap_lock_attempts`` it gives up with :class:`SwapLockBusy`."""
        conn = self._connection()
        for attempt in range(1, self._swap_lock_attempts + 1):
            transaction = conn.transaction()
            await transaction.start()
            try:
                # SET LOCAL takes no bind parameter; the value is an int we computed
                await conn.execute(f"SET LOCAL lock_timeout = {self._swap_lock_timeout_ms}")
                await pg_schemas.hold_swap_lock_exclusive(conn)
            except asyncpg.LockNotAvailableError:
                await transaction.rollback()
                self.swap_lock_waits += 1
                log.warning(
                    "rebuild swap: live writers held the swap lock; retrying",
                    extra={
                        "attempt": attempt,
                        "attempts": self._swap_lock_attempts,
                        "lock_timeout_ms": self._swap_lock_timeout_ms,
                    },
                )
                await asyncio.sleep(self._swap_retry_pause_s)
                continue
            except BaseException:
                await transaction.rollback()
                raise
            mark = self._bulk.mark()
            try:
                # the swap's own statements wait as long as they need (the lock is held); but
                # a swap that sits idle holding the lock (waiting on the broker for its tail:
                # the benchmark's stall, every live writer queued behind it) is ended by
                # PostgreSQL after swap_idle_timeout_s, which frees the lock (#12)
                await conn.execute(
                    "SET LOCAL lock_timeout TO DEFAULT; SET LOCAL "
                    f"idle_in_transaction_session_timeout = {self._swap_idle_timeout_ms}"
                )
                yield _RebuildUnitOfWork(conn, self._bulk)
            except BaseException as exc:
                self._bulk.rollback_to(mark)
                try:
                    await transaction.rollback()
                except asyncpg.InterfaceError:  # the connection is gone, and the lock with it
                    raise SwapAbandoned(
                        "the swap's connection was lost, the swap lock with it (PostgreSQL "
                        "ends a swap that sits idle holding the lock longer than "
                        f"{self._swap_idle_timeout_ms} ms, e.g. waiting for its tail from "
                        "the broker). Nothing was swapped: the live read models are "
                        "unchanged; run the rebuild again"
                    ) from exc
                raise
            await transaction.commit()
            return
        raise SwapLockBusy(
            f"the swap lock was not free within {self._swap_lock_attempts} attempts of "
            f"{self._swap_lock_timeout_ms} ms: a live transaction holds it (see "
            "pg_locks / pg_stat_activity); the live read models are unchanged, "
            f"the rebuilt schema {self.schema} is left to drop or retry"
        )

    async def store_events_not_on_kafka(self) -> list[tuple[RecordedEvent, SourcePosition]]:
        """followup's own events that may not have reached Kafka yet: unpublished outbox rows,
        and the recent ones (a relay may have sent them after the end offsets were captured)."""
        assert self._started_at is not None
        rows = await self._connection().fetch(
            """
            SELECT e.global_position, e.envelope FROM es_events e
            WHERE e.recorded_at >= $1
               OR EXISTS (SELECT 1 FROM es_outbox o
                          WHERE o.event_id = e.event_id AND o.published_at IS NULL)
            ORDER BY e.tx_id, e.global_position
            """,
            self._started_at - RECENT_STORE_EVENTS,
        )
        return [
            (
                RecordedEvent.model_validate(r["envelope"]),
                SourcePosition(STORE_SOURCE, r["global_position"]),
            )
            for r in rows
        ]

    async def swap_in(self, *, applied: int, skipped: int) -> None:
        conn = self._connection()
        await self._bulk.flush(conn)  # before the rename: the search path names the schema
        await pg_schemas.swap_in(conn, rebuilt=self.schema, retired=self.retired)
        await conn.execute(
            "UPDATE fu_rebuilds SET finished_at = now(), events = $2, skipped = $3 WHERE id = $1",
            self._number,
            applied,
            skipped,
        )

    async def close(self) -> None:
        if self._release is not None:
            await self._release.aclose()
            self._release = None
        self._conn = None

    async def drop_retired(self) -> None:
        async with self._admin.acquire() as conn:
            await pg_schemas.drop_schema(conn, self.retired)
