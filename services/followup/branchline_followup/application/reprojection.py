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

The journal's sales read their products' ratings and write holdings again (D-15): the unit must
hold those products' locks, as a unit applying a sale does, or a re-rating committed meanwhile
is missed (#12). A product's lock comes before any client's (no two units deadlock), and the
client's is held here already: so they are only tried; one another unit holds makes the unit
give up with :class:`ProductLocksWanted` (nothing written), and its rerun takes them first
(:class:`ProductsFirst`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from prometheus_client import Counter

from branchline_followup.application import suitability
from branchline_followup.application.ports import FollowupUnitOfWork, UnitsOfWork
from branchline_followup.domain.source_order import source_key
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import ConcurrencyError
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

PRODUCT_LOCK_RERUNS = Counter(
    "branchline_followup_reprojection_product_lock_reruns_total",
    "Units given up and run again because a re-projection's products were locked by another "
    "unit (D-15: the rerun takes them first, before its clients')",
)

T = TypeVar("T")


class ProductLocksWanted(ConcurrencyError):
    """A re-projection found a product of its client's sales locked by another unit (D-15,
    #12): the unit is given up (nothing written); run again taking ``product_ids`` first."""

    def __init__(self, product_ids: Collection[str]) -> None:
        super().__init__(f"{len(product_ids)} product lock(s) to take first")  # no ids: values
        self.product_ids = frozenset(product_ids)


class ProductsFirst:
    """The products a unit's reruns lock first, before any client's: those a re-projection in
    an earlier run of the same work found locked (:class:`ProductLocksWanted`)."""

    def __init__(self) -> None:
        self.products: frozenset[str] = frozenset()

    async def run(self, work: Callable[[frozenset[str]], Awaitable[T]]) -> T:
        """``work(products)`` until no re-projection in it wants a product it does not lock
        first. Each rerun locks more products (those of the client's journal), so this ends;
        a run that wants none more raises (a conflict: the caller's retries decide)."""
        while True:
            try:
                return await work(self.products)
            except ProductLocksWanted as exc:
                if exc.product_ids <= self.products:
                    raise
                PRODUCT_LOCK_RERUNS.inc()
                self.products |= exc.product_ids


async def in_a_unit_products_first(
    units: UnitsOfWork, work: Callable[[FollowupUnitOfWork], Awaitable[T]]
) -> T:
    """``work`` in a unit of its own, run again in a new unit (the earlier one rolled back)
    with the products a re-projection in it wanted locked first, before any client's (D-15,
    #12): the API's actions and the timer runner's rounds, as the worker's units are
    (:func:`~.projector.apply_event`, :func:`~.batches.apply_batch`). Without wanted
    products nothing more is done (no statement)."""

    async def run(products: frozenset[str]) -> T:
        async with units.begin() as uow:
            if products:
                await uow.lock_products(sorted(products))
            return await work(uow)

    return await ProductsFirst().run(run)


Apply = Callable[[FollowupUnitOfWork, RecordedEvent], Awaitable[None]]
"""Applies one event already marked applied and kept (the projection without its bookkeeping)."""


async def reproject_client(uow: FollowupUnitOfWork, client_id: str, apply: Apply) -> int:
    """Project the client again from its journal, in source order, within ``uow`` (the caller
    holds the client's lock); returns how many events were applied again."""
    kept = sorted(await uow.journal.of_client(client_id), key=lambda j: source_key(j.place))
    # Before anything is read or written again (D-15, #12): see the module's docstring.
    products = suitability.products_rated_or_sold(j.event for j in kept)
    if products and not await uow.try_lock_products(products):
        raise ProductLocksWanted(products)
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
