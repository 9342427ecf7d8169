"""Ongoing suitability (D-15): a review task when holdings stop fitting the client.

Suitability is not checked once. When a client's reassessment lowers their tolerance, or a
product they hold is re-rated above it, a ``suitability_review`` task is due for the RM by
close of business on the 5th business day (the branch's calendar), naming each holding that
no longer fits (its subject: ``suitability:<product ids>``). The RM warns the client (风险提示)
and records the outcome by completing the task (``client_warned`` on ``followup.completed``).

Pure: the holdings and the client in, the task command out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import ClientContext, CreateTask, FollowupTask, new_task
from branchline_followup.domain.vocabulary import TaskKind
from branchline_shared.events.vocabulary import ProductRisk, RiskTolerance

SUBJECT_PREFIX = "suitability:"
REVIEW_NAMESPACE = uuid.UUID("5b1f4c2e-9d3a-5e7b-8c6d-1a2b3c4d5e6f")
"""UUID v5 namespace of review task ids (cause event, client): fixed forever."""


@dataclass(frozen=True, slots=True)
class Holding:
    """A product the client holds, at the rating in force."""

    product_id: str
    risk: ProductRisk


def not_fitting(holdings: Iterable[Holding], tolerance: RiskTolerance) -> list[str]:
    """D-15: the holdings rated above ``tolerance`` (``R > C``), by product id."""
    return sorted({h.product_id for h in holdings if h.risk.rank > tolerance.rank})


def tolerance_lowered(before: RiskTolerance | None, after: RiskTolerance) -> bool:
    """A reassessment lowers the tolerance (a first assessment lowers nothing)."""
    return before is not None and after.rank < before.rank


def review_subject(product_ids: Sequence[str]) -> str:
    return SUBJECT_PREFIX + ",".join(product_ids)


def holdings_of(subject: str) -> list[str]:
    """The holdings a review task names (its subject)."""
    return subject.removeprefix(SUBJECT_PREFIX).split(",") if subject else []


def suitability_review(
    client: ClientContext,
    *,
    cause_event_id: uuid.UUID,
    at: datetime,
    product_ids: Sequence[str],
    open_tasks: Iterable[FollowupTask],
    policy: FollowupPolicy,
) -> list[CreateTask]:
    """D-15: the review task (none when every holding fits, or when the same cause already
    made one: a redelivered re-rating changes nothing)."""
    if not product_ids:
        return []
    task = new_task(
        kind=TaskKind.SUITABILITY_REVIEW,
        source_event_id=cause_event_id,
        client_id=client.client_id,
        branch_id=client.branch_id,
        assignee=client.rm_id or policy.unassigned,
        subject=review_subject(product_ids),
        opened_at=at,
        due_at=policy.calendar_for(client.branch_id).close_of_business_days_after(
            at, policy.suitability_review_business_days
        ),
        deadline_profile=policy.profile_for(client.branch_id),
    )
    # one cause (a re-rating) reaches many holders: one task each, with ids fixed forever
    task = task.model_copy(
        update={"id": uuid.uuid5(REVIEW_NAMESPACE, f"{cause_event_id}/{client.client_id}")}
    )
    if any(t.id == task.id for t in open_tasks):
        return []
    return [CreateTask(task=task)]
