"""Reading the event stores themselves, for a rebuild of the read models that does not need
the broker's log (which a broker that restarted empty no longer has).

Each store's log is read through the event store's gap-safe reader
(:meth:`~branchline_shared.eventstore.postgres.PostgresEventStore.read_log`: only transactions
that have ended), and the stores are merged by the time each event was recorded, then by store
and log order: a ``followup.*`` event is recorded after the intake events it followed from were
applied, so causes are replayed before their consequences, as the live worker applied them.
The messages look like the relay's (the event's envelope as value, as stored: the rebuild
upcasts it; ``source`` and ``global_position`` headers), marked as read from a store.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from branchline_followup.adapters.topic_replay import ReplayedMessage
from branchline_followup.domain.source_order import recorded_ms as epoch_ms
from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.eventstore.postgres import LogText, PostgresEventStore
from branchline_shared.postgres.pool import open_pool

PAGE = 5000
"""Events read from a store's log per query."""


@dataclass(frozen=True)
class StoreLog:
    source: str
    dsn: str


class StoreReplay:
    """An event source for :func:`~branchline_followup.application.rebuild.rebuild_read_models`."""

    def __init__(self, stores: Sequence[StoreLog]) -> None:
        self._stores = list(stores)
        self._rank = {s.source: i for i, s in enumerate(self._stores)}
        self._after = {s.source: LogPosition.start() for s in self._stores}
        self._pending: list[tuple[int, int, int, int, ReplayedMessage]] = []

    async def start(self) -> int:
        return await self._load()

    async def extend_to_current_end(self) -> int:
        return await self._load()

    async def _load(self) -> int:
        added = 0
        for store in self._stores:
            pool = await open_pool(store.dsn, min_size=1, max_size=1)
            try:
                log = PostgresEventStore(pool)
                while True:
                    page = await log.read_log_text(self._after[store.source], limit=PAGE)
                    for record in page:
                        self._push(store.source, record)
                        self._after[store.source] = record.log_position
                    added += len(page)
                    if len(page) < PAGE:
                        break
            finally:
                await pool.close()
        return added

    def _push(self, source: str, record: LogText) -> None:
        recorded_ms = epoch_ms(record.recorded_at)
        position = record.position.global_position
        # the stored text as it is, read once where it is applied (#12: it was validated
        # here, dumped and validated again)
        message = ReplayedMessage(
            topic=source,
            partition=0,
            offset=position,
            timestamp=recorded_ms,
            value=record.envelope.encode(),
            headers=(
                ("source", source.encode()),
                ("global_position", str(position).encode()),
            ),
            from_store=True,
        )
        heapq.heappush(
            self._pending,
            (recorded_ms, self._rank[source], record.log_position.tx_id, position, message),
        )

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        while self._pending:
            yield heapq.heappop(self._pending)[-1]

    async def stop(self) -> None:
        self._pending.clear()
