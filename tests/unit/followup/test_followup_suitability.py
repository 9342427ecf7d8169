"""D-15 ongoing suitability: which holdings stop fitting, and the review task they make due."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from branchline_followup.domain import ClientContext, FollowupPolicy, TaskKind
from branchline_followup.domain.suitability import (
    Holding,
    holdings_of,
    not_fitting,
    suitability_review,
    tolerance_lowered,
)
from branchline_shared.events.vocabulary import ProductRisk, RiskTolerance

pytestmark = pytest.mark.unit

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CLIENT = ClientContext(client_id="C-1", rm_id="rm-7", branch_id="BR-001")
CAUSE = uuid.UUID(int=7)


@pytest.mark.parametrize("tolerance", list(RiskTolerance))
@pytest.mark.parametrize("risk", list(ProductRisk))
def test_d15_a_holding_fits_exactly_when_its_rating_is_within_the_tolerance(
    tolerance: RiskTolerance, risk: ProductRisk
) -> None:
    held = [Holding("P-1", risk), Holding("P-SAFE", ProductRisk.R1)]

    assert not_fitting(held, tolerance) == (["P-1"] if risk.rank > tolerance.rank else [])


@pytest.mark.parametrize(
    ("before", "after", "lowered"),
    [(None, "C1", False), ("C3", "C2", True), ("C3", "C3", False), ("C2", "C5", False)],
)
def test_d15_only_a_lower_reassessment_lowers_the_tolerance(
    before: str | None, after: str, lowered: bool
) -> None:
    earlier = RiskTolerance(before) if before else None

    assert tolerance_lowered(earlier, RiskTolerance(after)) is lowered


def test_d15_review_names_every_holding_and_is_due_in_5_business_days() -> None:
    (command,) = suitability_review(
        CLIENT,
        cause_event_id=CAUSE,
        at=MONDAY_9,
        product_ids=["P-1", "P-2"],
        open_tasks=[],
        policy=FollowupPolicy(),
    )

    task = command.task
    assert task.kind is TaskKind.SUITABILITY_REVIEW
    assert task.rule == "D-15"
    assert task.assignee == "rm-7"
    assert holdings_of(task.subject) == ["P-1", "P-2"]
    assert task.due_at == datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # Monday + 5 business days


def test_d15_one_rerating_makes_one_task_per_holder() -> None:
    tasks = [
        suitability_review(
            ClientContext(client_id=client, rm_id="rm-7"),
            cause_event_id=CAUSE,
            at=MONDAY_9,
            product_ids=["P-1"],
            open_tasks=[],
            policy=FollowupPolicy(),
        )[0].task
        for client in ("C-1", "C-2")
    ]

    assert tasks[0].id != tasks[1].id
    assert {t.source_event_id for t in tasks} == {CAUSE}


def test_d15_nothing_to_review_and_a_redelivered_cause_make_no_task() -> None:
    policy = FollowupPolicy()
    assert not suitability_review(
        CLIENT, cause_event_id=CAUSE, at=MONDAY_9, product_ids=[], open_tasks=[], policy=policy
    )
    (first,) = suitability_review(
        CLIENT, cause_event_id=CAUSE, at=MONDAY_9, product_ids=["P-1"], open_tasks=[], policy=policy
    )
    assert not suitability_review(
        CLIENT,
        cause_event_id=CAUSE,
        at=MONDAY_9,
        product_ids=["P-1"],
        open_tasks=[first.task],
        policy=policy,
    )
