"""Ongoing suitability (D-15) on the read models: holdings kept per client, review tasks made
due by a lower reassessment or a re-rating above a holder's tolerance.

Runs inside :func:`~.projector.project`'s transaction (effectively once with the event). The
decision is :mod:`branchline_followup.domain.suitability`; this module reads and writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.domain import ClientContext, FollowupPolicy, FollowupTask, apply_commands
from branchline_followup.domain.suitability import (
    not_fitting,
    suitability_review,
    tolerance_lowered,
)
from branchline_shared.events.catalogue import EventType, ProductRerated, parse_payload
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.vocabulary import LifecycleStage, RiskTolerance

SaveTasks = Callable[
    [FollowupUnitOfWork, dict[uuid.UUID, FollowupTask], dict[uuid.UUID, FollowupTask]],
    Awaitable[None],
]

SOLD = EventType.PRODUCT_SOLD.value
ASSESSED = EventType.CLIENT_RISK_ASSESSED.value
RERATED = EventType.PRODUCT_RERATED.value


async def on_client_event(
    uow: FollowupUnitOfWork,
    event: RecordedEvent,
    client: ClientContext,
    previous_tolerance: str | None,
    tasks: dict[uuid.UUID, FollowupTask],
    policy: FollowupPolicy,
) -> dict[uuid.UUID, FollowupTask]:
    """A sale adds a holding (at the rating intake checked it with); a lower reassessment
    makes a review due for the holdings above the new tolerance."""
    data = event.data
    if event.type == SOLD and data.get("product_risk"):
        await uow.holdings.hold(
            client.client_id, str(data["product_id"]), str(data["product_risk"]), event.occurred_at
        )
    elif event.type == ASSESSED:
        after = RiskTolerance(str(data["level"]))
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


async def on_product_event(
    uow: FollowupUnitOfWork,
    event: RecordedEvent,
    policy: FollowupPolicy,
    save: SaveTasks,
) -> None:
    """A re-rating changes every holder's holding; each holder whose tolerance it now
    exceeds gets a review naming every holding that no longer fits."""
    if event.type != RERATED or event.product_id is None:
        return
    payload = parse_payload(event.type, event.data)
    assert isinstance(payload, ProductRerated)
    holders = await uow.holdings.rerate(event.product_id, payload.risk.value)
    at = max(event.occurred_at, payload.effective_at)
    for client_id in holders:  # in one order: no two writers deadlock
        await uow.lock_client(client_id)
        facts = await uow.clients.get(client_id)
        if facts is None or facts.risk_tolerance is None:
            continue
        tolerance = RiskTolerance(facts.risk_tolerance)
        product_ids = not_fitting(await uow.holdings.of_client(client_id), tolerance)
        if event.product_id not in product_ids:
            continue  # the re-rated product still fits this holder
        client = ClientContext(
            client_id=client_id,
            rm_id=facts.rm_id,
            stage=LifecycleStage(facts.lifecycle_stage),
            branch_id=facts.branch_id,
        )
        before = {t.id: t for t in await uow.tasks.open_of(client_id)}
        commands = suitability_review(
            client,
            cause_event_id=event.event_id,
            at=at,
            product_ids=product_ids,
            open_tasks=before.values(),
            policy=policy,
        )
        await save(uow, before, apply_commands(before, commands))
