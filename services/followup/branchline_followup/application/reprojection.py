"""Re-projecting a client in source order when one of its events arrives late (#13, ADR-0014).

A reconcile repair re-publishes what the broker lost, after later events of the same client
were applied; several repairs in a row may shuffle a client's events. Applied on top, such an
event would leave read models a fresh rebuild (source order) does not make. So, inside the
unit of work that applies it: the client's journal (every applied event of the client, kept as
applied) is read, what the client's own events wrote is removed, and they are applied again in
source order by the projection the rebuild runs, in replay: the events stay marked applied
(nothing is applied twice, nothing is published again); recorded task creations are found in
followup's store and replayed (task ids, deadlines and assignees as recorded, D-07); a timer
that fired is fired again by its recorded ``followup.overdue`` / ``followup.escalated``, which
are events of the client like the others. Only the late event pays: the in-order path is one
indexed check (:meth:`~.ports.ClientJournal.keep`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.domain.source_order import source_key
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.consuming import is_conflict, is_transient

log = logging.getLogger(__name__)

REPROJECTIONS = Counter(
    "branchline_followup_reprojections_total",
    "Clients projected again in source order because an event of theirs arrived late (#13)",
)
REPROJECTION_SKIPS = Counter(
    "branchline_followup_reprojection_skipped_events_total",
    "Events a re-projection could not apply in source order (skipped, as a rebuild skips them)",
)

Apply = Callable[[FollowupUnitOfWork, RecordedEvent], Awaitable[None]]
"""Applies one event already marked applied and kept (the projection without its bookkeeping)."""


async def reproject_client(uow: FollowupUnitOfWork, client_id: str, apply: Apply) -> int:
    """Project the client again from its journal, in source order, within ``uow`` (the caller
    holds the client's lock); returns how many events were applied again."""
    kept = sorted(await uow.journal.of_client(client_id), key=lambda j: source_key(j.place))
    await uow.journal.clear_read_models(client_id)
    applied = 0
    for journaled in kept:
        try:
            async with uow.savepoint():  # a failing event leaves no trace, as in a rebuild
                await apply(uow, journaled.event)
            applied += 1
        except Exception as exc:
            # A lost race (a creation it records, taken meanwhile) is not the event's fault:
            # the whole unit is run again and reads what the other writer stored (#12).
            if is_transient(exc) or is_conflict(exc):
                raise
            REPROJECTION_SKIPS.inc()
            log.warning(
                "event skipped in a re-projection",
                extra={"event_id": str(journaled.event.event_id), "error": type(exc).__name__},
            )
    REPROJECTIONS.inc()
    # Ids and counts only: never a personal value.
    log.info(
        "client projected again in source order",
        extra={"client_id": client_id, "events": len(kept), "applied": applied},
    )
    return applied
