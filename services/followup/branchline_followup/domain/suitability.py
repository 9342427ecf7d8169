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

from branchline_followup.domain.opening import SUITABILITY_SUBJECT_PREFIX, open_task, owner
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import ClientContext, CreateTask, FollowupTask
from branchline_followup.domain.vocabulary import TaskKind
from branchline_shared.domain.ids import name_uuid
from branchline_shared.events.vocabulary import ProductRisk, RiskTolerance

SUBJECT_PREFIX = SUITABILITY_SUBJECT_PREFIX
REVIEW_NAMESPACE = uuid.UUID("5b1f4c2e-9d3a-5e7b-8c6d-1a2b3c4d5e6f")
"""UUID v5 namespace of review task ids (cause event, client): fixed forever."""
CLIENT_WARNED = "client_warned"


@dataclass(frozen=True, slots=True)
class Holding:
    """A product the client holds, at the rating in force."""

    product_id: str
    risk: ProductRisk


@dataclass(frozen=True, slots=True)
class Rating:
    """One rating of a product on the shelf (D-13): an approval's (in force from its
    ``occurred_at``) or a re-rating's (from the later of its ``occurred_at`` and
    ``effective_at``). A re-approval after a suspension may rate the product anew: it counts
    like a re-rating."""

    event_id: uuid.UUID
    risk: ProductRisk
    effective_at: datetime


def _order(rating: Rating) -> tuple[datetime, str]:
    return rating.effective_at, str(rating.event_id)


def latest_rating(ratings: Iterable[Rating]) -> Rating | None:
    """The rating that holds are kept at: the one in force last (whatever order the ratings
    arrived in, so every holding ends at the same rating)."""
    return max(ratings, key=_order, default=None)


def rating_in_force(ratings: Iterable[Rating], at: datetime) -> Rating | None:
    """The rating in force at ``at`` (the latest whose ``effective_at`` is not after it)."""
    return latest_rating(r for r in ratings if r.effective_at <= at)


def ratings_since(ratings: Iterable[Rating], since: datetime) -> list[Rating]:
    """The ratings that took effect after ``since`` (a sale's time), in effect order: each
    one may have made a holding bought before stop fitting (D-15)."""
    return sorted((r for r in ratings if r.effective_at > since), key=_order)


def review_on_rating(
    client: ClientContext,
    *,
    product_id: str,
    rating: Rating,
    holdings: Iterable[Holding],
    tolerance: RiskTolerance,
    open_tasks: Iterable[FollowupTask],
    policy: FollowupPolicy,
) -> list[CreateTask]:
    """D-15: the review ``rating`` of ``product_id`` makes due for a client who held it
    before the rating took effect (none while it fits). It names every holding that no longer
    fits, the re-rated one at ``rating``."""
    if rating.risk.rank <= tolerance.rank:
        return []
    others = [h for h in holdings if h.product_id != product_id]
    return suitability_review(
        client,
        cause_event_id=rating.event_id,
        at=rating.effective_at,
        product_ids=not_fitting([*others, Holding(product_id, rating.risk)], tolerance),
        open_tasks=open_tasks,
        policy=policy,
    )


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
    # one cause (a re-rating) reaches many holders: one task each, with ids fixed forever
    command = open_task(
        policy,
        kind=TaskKind.SUITABILITY_REVIEW,
        cause_event_id=cause_event_id,
        client_id=client.client_id,
        branch_id=client.branch_id,
        assignee=owner(client, policy),
        subject=review_subject(product_ids),
        opened_at=at,
        due_at=policy.calendar_for(client.branch_id).close_of_business_days_after(
            at, policy.suitability_review_business_days
        ),
        task_id=name_uuid(REVIEW_NAMESPACE, f"{cause_event_id}/{client.client_id}"),
    )
    if any(t.id == command.task.id for t in open_tasks):
        return []
    return [command]


def reviews_after_sale(
    client: ClientContext,
    *,
    product_id: str,
    sold_at: datetime,
    ratings: Sequence[Rating],
    holdings: Iterable[Holding],
    tolerance: RiskTolerance | None,
    open_tasks: Iterable[FollowupTask],
    policy: FollowupPolicy,
) -> list[CreateTask]:
    """D-15 when a sale reaches followup after ratings that took effect after it (the
    product's stream and the client's travel apart, under different keys): the reviews those
    ratings would have made had the sale arrived first (:func:`review_on_rating`), each caused
    by its rating: the same tasks whichever order the events arrived in."""
    if tolerance is None:
        return []
    held = list(holdings)
    known = list(open_tasks)
    commands: list[CreateTask] = []
    for rating in ratings_since(ratings, sold_at):
        made = review_on_rating(
            client,
            product_id=product_id,
            rating=rating,
            holdings=held,
            tolerance=tolerance,
            open_tasks=known,
            policy=policy,
        )
        commands.extend(made)
        known.extend(c.task for c in made)
    return commands


def completion_missing(task: FollowupTask, client_warned: bool | None) -> list[str]:
    """D-15: what a completion of ``task`` lacks. A review is completed only once the client
    was warned (风险提示) that the holdings no longer fit: ``client_warned`` must be true (a
    client not reached yet keeps the review open, and overdue it escalates)."""
    if task.kind is TaskKind.SUITABILITY_REVIEW and client_warned is not True:
        return [CLIENT_WARNED]
    return []
