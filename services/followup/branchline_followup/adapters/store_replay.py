"""Reading the event stores themselves, for a rebuild of the read models that does not need
the broker's log (which a broker that restarted empty no longer has).

Each store's log is read in its gap-safe order (only transactions that have ended), and the
stores are merged by the time each event was recorded, then by store and log order: a
``followup.*`` event is recorded after the intake events it followed from were applied, so
causes are replayed before their consequences, as the live worker applied them. The messages
look like the relay's (same value, ``source`` and ``global_position`` headers).
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import orjson

from branchline_followup.adapters.topic_replay import ReplayedMessage


@dataclass(frozen=True)
class StoreLog:
    source: str
    dsn: str


class StoreReplay:
    """An event source for :func:`~branchline_followup.application.rebuild.rebuild_read_models`."""

    def __init__(self, stores: Sequence[StoreLog]) -> None:
        self._stores = list(stores)
        self._rank = {s.source: i for i, s in enumerate(self._stores)}
        self._after: dict[str, tuple[int, int]] = {s.source: (0, 0) for s in self._stores}
        self._pending: list[tuple[int, int, int, int, ReplayedMessage]] = []

    async def start(self) -> int:
        return await self._load()

    async def extend_to_current_end(self) -> int:
        return await self._load()

    async def _load(self) -> int:
        added = 0
        for store in self._stores:
            conn = await asyncpg.connect(store.dsn)
            try:
                rows = await conn.fetch(
                    """
                    SELECT tx_id::text::bigint AS tx, global_position,
                           (extract(epoch FROM recorded_at) * 1000)::bigint AS recorded_ms,
                           envelope::text AS envelope
                    FROM es_events
                    WHERE (tx_id, global_position) > ($1::text::xid8, $2)
                      AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY tx_id, global_position
                    """,
                    str(self._after[store.source][0]),
                    self._after[store.source][1],
                )
            finally:
                await conn.close()
            for row in rows:
                message = ReplayedMessage(
                    topic=store.source,
                    partition=0,
                    offset=row["global_position"],
                    timestamp=row["recorded_ms"],
                    value=orjson.dumps(orjson.loads(row["envelope"])),
                    headers=(
                        ("source", store.source.encode()),
                        ("global_position", str(row["global_position"]).encode()),
                    ),
                )
                heapq.heappush(
                    self._pending,
                    (
                        row["recorded_ms"],
                        self._rank[store.source],
                        row["tx"],
                        row["global_position"],
                        message,
                    ),
                )
                self._after[store.source] = (row["tx"], row["global_position"])
                added += 1
        return added

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        while self._pending:
            yield heapq.heappop(self._pending)[-1]

    async def stop(self) -> None:
        self._pending.clear()
