"""D-15 ongoing suitability: which holdings stop fitting, and the review task they make due."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from branchline_followup.domain import ClientContext, FollowupPolicy, TaskKind
from branchline_followup.domain.opening import creation_record, open_task, task_from_creation
from branchline_followup.domain.suitability import (
    Holding,
    Rating,
    completion_missing,
    holdings_of,
    latest_rating,
    not_fitting,
    rating_in_force,
    review_on_rating,
    reviews_after_sale,
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


# --- ratings in either arrival order (D-13, D-15) ---

SOLD_AT = MONDAY_9
RERATING = Rating(uuid.UUID(int=11), ProductRisk.R4, MONDAY_9 + timedelta(days=1))
APPROVAL = Rating(uuid.UUID(int=10), ProductRisk.R2, MONDAY_9 - timedelta(days=30))


def test_d13_the_latest_rating_and_the_one_in_force() -> None:
    ratings = [RERATING, APPROVAL]

    assert latest_rating(ratings) == RERATING
    assert rating_in_force(ratings, SOLD_AT) == APPROVAL
    assert rating_in_force(ratings, APPROVAL.effective_at - timedelta(seconds=1)) is None


@pytest.mark.parametrize("tolerance", list(RiskTolerance))
def test_d15_a_sale_arriving_after_its_rerating_makes_the_same_review(
    tolerance: RiskTolerance,
) -> None:
    policy = FollowupPolicy()
    held_elsewhere = [Holding("P-OTHER", ProductRisk.R5)]
    # the re-rating first: the sale finds it in the ratings
    sale_last = reviews_after_sale(
        CLIENT,
        product_id="P-1",
        sold_at=SOLD_AT,
        ratings=[APPROVAL, RERATING],
        holdings=[*held_elsewhere, Holding("P-1", ProductRisk.R4)],
        tolerance=tolerance,
        open_tasks=[],
        policy=policy,
    )
    # the sale first: the re-rating finds the holding
    rating_last = review_on_rating(
        CLIENT,
        product_id="P-1",
        rating=RERATING,
        holdings=[*held_elsewhere, Holding("P-1", ProductRisk.R2)],
        tolerance=tolerance,
        open_tasks=[],
        policy=policy,
    )

    assert sale_last == rating_last
    assert bool(sale_last) is (ProductRisk.R4.rank > tolerance.rank)
    for command in sale_last:
        assert command.task.source_event_id == RERATING.event_id
        assert "P-1" in holdings_of(command.task.subject)


def test_d15_a_rating_before_the_sale_makes_no_review() -> None:
    assert not reviews_after_sale(
        CLIENT,
        product_id="P-1",
        sold_at=RERATING.effective_at + timedelta(hours=1),
        ratings=[APPROVAL, RERATING],
        holdings=[Holding("P-1", ProductRisk.R4)],
        tolerance=RiskTolerance.C1,
        open_tasks=[],
        policy=FollowupPolicy(),
    )


# --- completing a review (D-15) ---


@pytest.mark.parametrize(
    ("warned", "missing"), [(None, ["client_warned"]), (False, ["client_warned"]), (True, [])]
)
def test_d15_a_review_is_completed_only_with_the_client_warned(
    warned: bool | None, missing: list[str]
) -> None:
    (command,) = suitability_review(
        CLIENT,
        cause_event_id=CAUSE,
        at=MONDAY_9,
        product_ids=["P-1"],
        open_tasks=[],
        policy=FollowupPolicy(),
    )

    assert completion_missing(command.task, warned) == missing


def test_d15_other_tasks_need_no_warning() -> None:
    revisit = open_task(
        FollowupPolicy(),
        kind=TaskKind.REVISIT,
        cause_event_id=CAUSE,
        client_id="C-1",
        branch_id=None,
        assignee="rm-7",
        subject="client",
        opened_at=MONDAY_9,
        due_at=MONDAY_9 + timedelta(days=1),
    ).task

    assert completion_missing(revisit, None) == []


def test_d15_a_reviews_recorded_creation_names_its_holdings_and_reads_back_exactly() -> None:
    (command,) = suitability_review(
        CLIENT,
        cause_event_id=CAUSE,
        at=MONDAY_9,
        product_ids=["P-1", "P-2"],
        open_tasks=[],
        policy=FollowupPolicy(),
    )
    record = creation_record(command.task)

    read_back = task_from_creation(record, client_id="C-1", branch_id="BR-001", opened_at=MONDAY_9)

    assert record.holdings == ("P-1", "P-2")
    assert read_back == command.task  # its own id (per client), not one derived from the cause
