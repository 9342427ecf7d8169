"""The PostgreSQL side of a blue/green rebuild (``application/rebuild.py`` ``RebuildTarget``):
a fresh schema ``fu_rebuild_<n>`` with empty copies of the live tables, one connection whose
``search_path`` writes it, and the swap (see :mod:`.pg_schemas` for the locks)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from branchline_followup.adapters import pg_schemas
from branchline_followup.adapters.unit_of_work import PostgresFollowupUnitOfWork
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection, PgPool, open_pool

STORE_SOURCE = "followup"
RECENT_STORE_EVENTS = timedelta(minutes=10)


class PostgresRebuildTarget:
    def __init__(self, admin_pool: PgPool, database_url: str) -> None:
        self._admin = admin_pool
        self._database_url = database_url
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
        async with conn.transaction():
            yield PostgresFollowupUnitOfWork(conn, pg_schemas.REBUILD_CLIENT_LOCK_CLASS)

    @contextlib.asynccontextmanager
    async def swap(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        conn = self._connection()
        async with conn.transaction():
            await pg_schemas.hold_swap_lock_exclusive(conn)
            yield PostgresFollowupUnitOfWork(conn, pg_schemas.REBUILD_CLIENT_LOCK_CLASS)

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
