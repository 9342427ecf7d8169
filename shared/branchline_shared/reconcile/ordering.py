"""A running consumer's self-check of order (#12): events it applied after a later version
of their stream and never put in order, judged as ``branchline reconcile`` judges them
(:func:`~.compare.compare`), but without reading everything the consumer applied.

Only a stream holding an event the consumer did not put in source order itself can be out of
order (:func:`~.compare._applied_late`: an event is *late*, not a difference, when it and every
later version applied before it were put in order). So the check asks the consumer for those
events alone (``ConsumerSource.unordered``: in the followup worker, the events without a
client, a product's or a staff member's, and any applied before the client journal), reads
those streams' events from each store by the stream index, asks the consumer when it applied
each, and compares. Its cost grows with those streams, not with the log. A consumer whose
order of applying is its record (``late_is_record``: the audit ledger) is never out of order,
and is not asked.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from branchline_shared.postgres.pool import PgConnection
from branchline_shared.reconcile.compare import StoreEvent, compare
from branchline_shared.reconcile.running import ConsumerSource, StoreSource, store_connection
from branchline_shared.reconcile.stores import read_streams, streams_of

JUDGED_STREAMS_KEPT = 16_384
"""How many streams one pass remembers having judged (about 2 MB of stream ids)."""


def checks_order(consumer: ConsumerSource) -> bool:
    """Whether the consumer's self-check looks at order: it can tell which events it did not
    put in order, and its order of applying is not its own record."""
    return (
        consumer.unordered is not None
        and consumer.applied_among is not None
        and not consumer.late_is_record
    )


class JudgedStreams:
    """The streams (store, stream id) one pass judged whole already, the most recent
    ``limit`` of them: a stream with candidates on several pages is read once, and what the
    pass carries between pages stays bounded however many streams it meets (pure)."""

    def __init__(self, limit: int = JUDGED_STREAMS_KEPT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._streams: dict[tuple[str, str], None] = {}  # insertion order: oldest first

    def __contains__(self, stream: tuple[str, str]) -> bool:
        return stream in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: tuple[str, str]) -> None:
        if stream in self._streams:
            return
        self._streams[stream] = None
        if len(self._streams) > self._limit:
            del self._streams[next(iter(self._streams))]


ReadStreams = Callable[[Sequence[uuid.UUID], JudgedStreams], Awaitable[dict[str, list[StoreEvent]]]]
"""Per store, every event of the streams of the given candidates not judged yet (each then
added to the judged ones), in log order."""

StreamReader = Callable[
    [Sequence[StoreSource]], contextlib.AbstractAsyncContextManager[ReadStreams]
]


@contextlib.asynccontextmanager
async def store_streams(stores: Sequence[StoreSource]) -> AsyncIterator[ReadStreams]:
    """The stores' streams for one pass, each store's connection opened at its first page
    and held to the pass's end (not one per page)."""
    async with contextlib.AsyncExitStack() as opened:
        conns: dict[str, PgConnection] = {}

        async def read(
            candidates: Sequence[uuid.UUID], judged: JudgedStreams
        ) -> dict[str, list[StoreEvent]]:
            logs: dict[str, list[StoreEvent]] = {}
            for store in stores:
                conn = conns.get(store.source)
                if conn is None:
                    conn = await opened.enter_async_context(store_connection(store.dsn))
                    conns[store.source] = conn
                wanted = [
                    stream
                    for stream in await streams_of(conn, candidates)
                    if (store.source, stream) not in judged
                ]
                for stream in wanted:
                    judged.add((store.source, stream))
                logs[store.source] = (
                    await read_streams(conn, store.source, wanted) if wanted else []
                )
            return logs

        yield read


class OrderWatch:
    """One consumer's order step across its self-checks (#12): a check takes as candidates
    only the events applied since its mark, plus those it found before, so its cost grows
    with what was applied since, not with everything ever applied.

    Why that is enough: of an out-of-order pair, the late event is the one applied later, so
    it is applied after some check's mark and that check takes it. What was found is re-asked
    every check (its streams read again, ``applied_among``): kept while still out of order, gone
    once a rebuild puts it in order. The mark lags one check (candidates are those applied after
    the mark of the check before last): an apply sequence is taken when a unit of work inserts,
    not when it commits, so a unit still open at one check may commit a lower sequence than
    that check saw. A full check (a process's first, every ``full_scan_every``-th, a log reset:
    :class:`~.self_repair.SelfRepair` decides) takes every unordered event, as the step always
    did: it catches what the mark could still miss (a unit open across a whole interval, a
    sequence restarted under it). Either walks its candidates ``page`` at a time (the module's
    "Paged")."""

    def __init__(
        self,
        consumer: ConsumerSource,
        *,
        page: int = 1_000,
        judged_limit: int = JUDGED_STREAMS_KEPT,
        streams: StreamReader = store_streams,
    ) -> None:
        if page < 1:
            raise ValueError("page must be at least 1")
        self._consumer = consumer
        self._page = page
        self._judged_limit = judged_limit
        self._streams = streams
        self._marks: tuple[int, int] | None = None  # (previous check's, last check's) highest
        self._found: frozenset[uuid.UUID] = frozenset()
        self.candidates = 0
        """How many events the last check took as candidates (what its cost grows with)."""
        self.pages = 0
        """How many pages of candidates the last check read."""
        self.largest_read = 0
        """The most store events the last check held at once (one page's streams)."""

    async def check(self, stores: Sequence[StoreSource], *, full: bool) -> list[StoreEvent]:
        """The events the consumer applied out of order and nothing put in order since."""
        unordered = self._consumer.unordered
        assert unordered is not None
        after = 0 if full or self._marks is None else self._marks[0]
        judged = JudgedStreams(self._judged_limit)
        found: dict[uuid.UUID, StoreEvent] = {}
        fresh = seen = 0
        again: set[uuid.UUID] = set()  # earlier findings met among this check's pages
        self.pages = self.largest_read = 0
        async with self._streams(stores) as read:
            while True:
                page = await unordered(after, self._page)
                if not page:
                    break
                self.pages += 1
                fresh += len(page)
                ids = [entry.event_id for entry in page]
                again.update(event_id for event_id in ids if event_id in self._found)
                await self._judge(read, ids, judged, found)
                last = page[-1].seq
                if len(page) < self._page or last is None or last <= after:
                    seen = max(seen, last or 0)
                    break
                after = seen = max(seen, last)
            earlier = sorted(self._found - again)  # re-asked: still out of order?
            if earlier:
                await self._judge(read, earlier, judged, found)
        last_mark = self._marks[1] if self._marks is not None else seen
        self._marks = (last_mark, max(last_mark, seen))
        self.candidates = fresh + len(earlier)
        self._found = frozenset(found)
        return list(found.values())

    async def _judge(
        self,
        read: ReadStreams,
        candidates: Sequence[uuid.UUID],
        judged: JudgedStreams,
        found: dict[uuid.UUID, StoreEvent],
    ) -> None:
        """Judge the streams of ``candidates`` not judged yet in this pass; add what is out
        of order to ``found``."""
        assert self._consumer.applied_among is not None
        logs = await read(candidates, judged)
        ids = [event.event_id for events in logs.values() for event in events]
        if not ids:
            return
        self.largest_read = max(self.largest_read, len(ids))
        applied = await self._consumer.applied_among(ids)
        report = compare(
            self._consumer.name, logs, applied, late_is_record=self._consumer.late_is_record
        )
        bad = set(report.out_of_order)
        for events in logs.values():
            for event in events:
                if event.event_id in bad:
                    found[event.event_id] = event


def remedy(consumer: ConsumerSource) -> str:
    return consumer.order_remedy or "branchline reconcile (docs/reliability.md)"
