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

import uuid
from collections.abc import Sequence

from branchline_shared.reconcile.compare import StoreEvent, compare
from branchline_shared.reconcile.running import ConsumerSource, StoreSource, store_connection
from branchline_shared.reconcile.stores import read_streams_of


def checks_order(consumer: ConsumerSource) -> bool:
    """Whether the consumer's self-check looks at order: it can tell which events it did not
    put in order, and its order of applying is not its own record."""
    return (
        consumer.unordered is not None
        and consumer.applied_among is not None
        and not consumer.late_is_record
    )


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
    sequence restarted under it)."""

    def __init__(self, consumer: ConsumerSource) -> None:
        self._consumer = consumer
        self._marks: tuple[int, int] | None = None  # (previous check's, last check's) highest
        self._found: frozenset[uuid.UUID] = frozenset()
        self.candidates = 0
        """How many events the last check took as candidates (what its cost grows with)."""

    async def check(self, stores: Sequence[StoreSource], *, full: bool) -> list[StoreEvent]:
        """The events the consumer applied out of order and nothing put in order since."""
        assert self._consumer.unordered is not None
        after = 0 if full or self._marks is None else self._marks[0]
        fresh = await self._consumer.unordered(after)
        seen = max((entry.seq or 0 for entry in fresh), default=0)
        last = self._marks[1] if self._marks is not None else seen
        self._marks = (last, max(last, seen))
        candidates = {entry.event_id for entry in fresh} | self._found
        self.candidates = len(candidates)
        found = await out_of_order(self._consumer, stores, sorted(candidates))
        self._found = frozenset(event.event_id for event in found)
        return found


async def out_of_order(
    consumer: ConsumerSource, stores: Sequence[StoreSource], candidates: Sequence[uuid.UUID]
) -> list[StoreEvent]:
    """Of the streams of ``candidates``, the events ``consumer`` applied out of order."""
    assert consumer.applied_among is not None
    if not candidates:
        return []
    logs: dict[str, list[StoreEvent]] = {}
    for store in stores:
        async with store_connection(store.dsn) as conn:
            logs[store.source] = await read_streams_of(conn, store.source, candidates)
    ids = [event.event_id for events in logs.values() for event in events]
    applied = await consumer.applied_among(ids)
    report = compare(consumer.name, logs, applied, late_is_record=consumer.late_is_record)
    found = set(report.out_of_order)
    return [event for events in logs.values() for event in events if event.event_id in found]


def remedy(consumer: ConsumerSource) -> str:
    return consumer.order_remedy or "branchline reconcile (docs/reliability.md)"
