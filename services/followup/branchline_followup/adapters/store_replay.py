"""Reading the event stores themselves, for a rebuild of the read models that does not need
the broker's log (which a broker that restarted empty no longer has).

Each store's log is read in its gap-safe order (only transactions that have ended) and kept in
that order; the stores are merged by the time each event was recorded (:func:`merged`: the
next event is the earliest recorded of the stores' next events, intake first on a tie): a
``followup.*`` event is recorded after the intake events it followed from were applied, so
causes are replayed before their consequences, as the live worker applied them. The messages
look like the relay's (same value, ``source`` and ``global_position`` headers). The followup
projector orders one client's events the same way (``fu_client_log``).
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import orjson

from branchline_followup.adapters.topic_replay import ReplayedMessage


@dataclass(frozen=True)
class StoreLog:
    source: str
    dsn: str


T = TypeVar("T")


def merged(logs: Sequence[Sequence[tuple[int, T]]]) -> list[T]:
    """The items of ``logs`` (each in its store's log order, as ``(recorded_ms, item)``, in
    the stores' rank order) merged: each store's order kept, the earliest recorded next item
    first, the lower rank on a tie."""
    heads = [(log[0][0], rank, 0) for rank, log in enumerate(logs) if log]
    heapq.heapify(heads)
    out: list[T] = []
    while heads:
        _, rank, index = heapq.heappop(heads)
        out.append(logs[rank][index][1])
        if index + 1 < len(logs[rank]):
            heapq.heappush(heads, (logs[rank][index + 1][0], rank, index + 1))
    return out


class StoreReplay:
    """An event source for :func:`~branchline_followup.application.rebuild.rebuild_read_models`."""

    def __init__(self, stores: Sequence[StoreLog]) -> None:
        self._stores = list(stores)
        self._rank = {s.source: i for i, s in enumerate(self._stores)}
        self._after: dict[str, tuple[int, int]] = {s.source: (0, 0) for s in self._stores}
        self._pending: list[list[tuple[int, ReplayedMessage]]] = [[] for _ in self._stores]

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
                self._pending[self._rank[store.source]].append((row["recorded_ms"], message))
                self._after[store.source] = (row["tx"], row["global_position"])
                added += 1
        return added

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        pending, self._pending = self._pending, [[] for _ in self._stores]
        for message in merged(pending):
            yield message

    async def stop(self) -> None:
        self._pending = [[] for _ in self._stores]
