"""Ongoing suitability (D-15) on the read models: holdings kept per client, review tasks made
due by a lower reassessment or a re-rating above a holder's tolerance.

Runs inside :func:`~.projector.project`'s transaction (effectively once with the event). The
decision is :mod:`branchline_followup.domain.suitability`; this module reads and writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.domain import ClientContext, FollowupPolicy, FollowupTask, apply_commands
from branchline_followup.domain.suitability import (
    Rating,
    latest_rating,
    not_fitting,
    review_on_rating,
    reviews_after_sale,
    suitability_review,
    tolerance_lowered,
)
from branchline_shared.events.catalogue import (
    ClientRiskAssessed,
    EventType,
    ProductApproved,
    ProductRerated,
    ProductSold,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.events.vocabulary import LifecycleStage, RiskTolerance

SaveTasks = Callable[
    [FollowupUnitOfWork, dict[uuid.UUID, FollowupTask], dict[uuid.UUID, FollowupTask]],
    Awaitable[None],
]

SOLD = EventType.PRODUCT_SOLD.value
ASSESSED = EventType.CLIENT_RISK_ASSESSED.value
APPROVED = EventType.PRODUCT_APPROVED.value
RERATED = EventType.PRODUCT_RERATED.value


def products_rated_or_sold(events: Iterable[RecordedEvent]) -> list[str]:
    """The products whose lock (:meth:`~.ports.FollowupUnitOfWork.lock_products`) applying
    ``events`` needs, sorted: a sale's (it reads the product's ratings and writes a holding)
    and a rating's (it re-rates the product's holdings). Without it, a sale and a re-rating
    of one product applied at once by two workers (the sale under its client's key, the
    rating under the product's: two partitions) each miss the other's uncommitted rows, and
    the holding keeps the old risk with no review raised (D-15, #12)."""
    products: set[str] = set()
    for event in events:
        if event.type == SOLD:
            product_id = event.data.get("product_id")
            if isinstance(product_id, str):
                products.add(product_id)
        elif event.type in (APPROVED, RERATED) and event.product_id is not None:
            products.add(event.product_id)
    return sorted(products)


async def on_client_event(
    uow: FollowupUnitOfWork,
    typed: Decoded,
    client: ClientContext,
    previous_tolerance: str | None,
    tasks: dict[uuid.UUID, FollowupTask],
    policy: FollowupPolicy,
) -> dict[uuid.UUID, FollowupTask]:
    """A sale adds a holding, at the shelf's latest rating (the sale's own ``product_risk``
    for a product followup has no rating of), and makes due the reviews of ratings that took
    effect after it but reached followup first; a lower reassessment makes a review due for
    the holdings above the new tolerance."""
    event = typed.envelope
    if event.type == SOLD:
        sold = payload_as(typed, ProductSold)
        product_id = sold.product_id
        ratings = await uow.holdings.ratings_of(product_id)
        latest = latest_rating(ratings)
        risk = latest.risk if latest else sold.product_risk
        if risk is None:
            return tasks
        await uow.holdings.hold(client.client_id, product_id, risk.value, event.occurred_at)
        commands = reviews_after_sale(
            client,
            product_id=product_id,
            sold_at=event.occurred_at,
            ratings=ratings,
            holdings=await uow.holdings.of_client(client.client_id),
            # a sale leaves the tolerance as it was
            tolerance=RiskTolerance(previous_tolerance) if previous_tolerance else None,
            open_tasks=tasks.values(),
            policy=policy,
        )
        return apply_commands(tasks, commands)
    if event.type == ASSESSED:
        after = payload_as(typed, ClientRiskAssessed).level
        before = RiskTolerance(previous_tolerance) if previous_tolerance else None
        if tolerance_lowered(before, after):
            product_ids = not_fitting(await uow.holdings.of_client(client.client_id), after)
            commands = suitability_review(
                client,
                cause_event_id=event.event_id,
                at=event.occurred_at,
                product_ids=product_ids,
                open_tasks=tasks.values(),
                policy=policy,
            )
            tasks = apply_commands(tasks, commands)
    return tasks


def _rating(typed: Decoded) -> Rating | None:
    """The rating a shelf event states (``None``: not a rating)."""
    event = typed.envelope
    if event.type not in (APPROVED, RERATED):
        return None
    payload = typed.payload  # upcast, stored: its texts are sealed
    if isinstance(payload, ProductRerated):
        effective_at = max(event.occurred_at, payload.effective_at)
        return Rating(event.event_id, payload.risk, effective_at)
    assert isinstance(payload, ProductApproved)
    return Rating(event.event_id, payload.risk, event.occurred_at)


async def on_product_event(
    uow: FollowupUnitOfWork,
    typed: Decoded,
    policy: FollowupPolicy,
    save: SaveTasks,
) -> None:
    """A rating (approval or re-rating) joins the product's ratings; every holding of the
    product moves to the latest rating; each holder who bought before it took effect and
    whose tolerance it exceeds gets a review naming every holding that no longer fits."""
    event = typed.envelope
    rating = _rating(typed)
    if rating is None or event.product_id is None:
        return
    await uow.holdings.record_rating(event.product_id, rating)
    latest = latest_rating(await uow.holdings.ratings_of(event.product_id))
    assert latest is not None  # this one at least
    holders = await uow.holdings.rerate(event.product_id, latest.risk.value)
    held_before = {client_id for client_id, since in holders if since < rating.effective_at}
    # locked at once in one order (no two writers deadlock), what is read of them read ahead
    await uow.hold_clients(sorted(held_before))
    for client_id in sorted(held_before):
        await uow.lock_client(client_id)
        facts = await uow.clients.get(client_id)
        if facts is None or facts.risk_tolerance is None:
            continue
        client = ClientContext(
            client_id=client_id,
            rm_id=facts.rm_id,
            stage=LifecycleStage(facts.lifecycle_stage),
            branch_id=facts.branch_id,
            risk_level=facts.risk_level,
        )
        before = {t.id: t for t in await uow.tasks.open_of(client_id)}
        commands = review_on_rating(
            client,
            product_id=event.product_id,
            rating=rating,
            holdings=await uow.holdings.of_client(client_id),
            tolerance=RiskTolerance(facts.risk_tolerance),
            open_tasks=before.values(),
            policy=policy,
        )
        await save(uow, before, apply_commands(before, commands))
