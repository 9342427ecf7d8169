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


async def out_of_order(consumer: ConsumerSource, stores: Sequence[StoreSource]) -> list[StoreEvent]:
    """The events ``consumer`` applied out of order and nothing put in order since."""
    assert consumer.unordered is not None
    assert consumer.applied_among is not None
    candidates = [entry.event_id for entry in await consumer.unordered()]
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
