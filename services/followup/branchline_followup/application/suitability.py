"""Ongoing suitability (D-15) on the read models: holdings kept per client, review tasks made
due by a lower reassessment or a re-rating above a holder's tolerance.

Runs inside :func:`~.projector.project`'s transaction (effectively once with the event). The
decision is :mod:`branchline_followup.domain.suitability`; this module reads and writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from branchline_followup.adapters import read_models
from branchline_followup.adapters.pg_schemas import lock_client
from branchline_followup.domain import ClientContext, FollowupPolicy, FollowupTask, apply_commands
from branchline_followup.domain.suitability import (
    Holding,
    not_fitting,
    suitability_review,
    tolerance_lowered,
)
from branchline_shared.events.catalogue import (
    ClientRiskAssessed,
    EventType,
    ProductRerated,
    ProductSold,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import payload_as
from branchline_shared.events.vocabulary import LifecycleStage, ProductRisk, RiskTolerance
from branchline_shared.postgres.pool import PgConnection

SaveTasks = Callable[
    [PgConnection, dict[uuid.UUID, FollowupTask], dict[uuid.UUID, FollowupTask]], Awaitable[None]
]

SOLD = EventType.PRODUCT_SOLD.value
ASSESSED = EventType.CLIENT_RISK_ASSESSED.value
RERATED = EventType.PRODUCT_RERATED.value


async def holdings_of(conn: PgConnection, client_id: str) -> list[Holding]:
    rows = await conn.fetch(
        "SELECT product_id, product_risk FROM fu_holdings WHERE client_id = $1", client_id
    )
    return [Holding(r["product_id"], ProductRisk(r["product_risk"])) for r in rows]


async def on_client_event(
    conn: PgConnection,
    event: RecordedEvent,
    client: ClientContext,
    previous_tolerance: str | None,
    tasks: dict[uuid.UUID, FollowupTask],
    policy: FollowupPolicy,
) -> dict[uuid.UUID, FollowupTask]:
    """A sale adds a holding (at the rating intake checked it with); a lower reassessment
    makes a review due for the holdings above the new tolerance."""
    if event.type == SOLD:
        sold = payload_as(event, ProductSold)
        if sold.product_risk is None:
            return tasks
        await conn.execute(
            "INSERT INTO fu_holdings (client_id, product_id, product_risk, since) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (client_id, product_id) DO UPDATE SET "
            "product_risk = EXCLUDED.product_risk",
            client.client_id,
            sold.product_id,
            sold.product_risk.value,
            event.occurred_at,
        )
    elif event.type == ASSESSED:
        after = payload_as(event, ClientRiskAssessed).level
        before = RiskTolerance(previous_tolerance) if previous_tolerance else None
        if tolerance_lowered(before, after):
            product_ids = not_fitting(await holdings_of(conn, client.client_id), after)
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
    conn: PgConnection,
    event: RecordedEvent,
    policy: FollowupPolicy,
    client_lock_class: int,
    save: SaveTasks,
) -> None:
    """A re-rating changes every holder's holding; each holder whose tolerance it now
    exceeds gets a review naming every holding that no longer fits."""
    if event.type != RERATED or event.product_id is None:
        return
    payload = payload_as(event, ProductRerated)
    rows = await conn.fetch(
        "UPDATE fu_holdings SET product_risk = $2 WHERE product_id = $1 RETURNING client_id",
        event.product_id,
        payload.risk.value,
    )
    at = max(event.occurred_at, payload.effective_at)
    for client_id in sorted({r["client_id"] for r in rows}):
        await lock_client(conn, client_id, client_lock_class)
        facts = await read_models.fetch_client(conn, client_id)
        if facts is None or facts.risk_tolerance is None:
            continue
        tolerance = RiskTolerance(facts.risk_tolerance)
        product_ids = not_fitting(await holdings_of(conn, client_id), tolerance)
        if event.product_id not in product_ids:
            continue  # the re-rated product still fits this holder
        client = ClientContext(
            client_id=client_id,
            rm_id=facts.rm_id,
            stage=LifecycleStage(facts.lifecycle_stage),
            branch_id=facts.branch_id,
        )
        before = {t.id: t for t in await read_models.open_tasks_of(conn, client_id)}
        commands = suitability_review(
            client,
            cause_event_id=event.event_id,
            at=at,
            product_ids=product_ids,
            open_tasks=before.values(),
            policy=policy,
        )
        await save(conn, before, apply_commands(before, commands))
