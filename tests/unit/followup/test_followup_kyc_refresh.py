"""D-03 KYC refresh: due diligence done makes its refresh due by the client's risk level, and
a change of risk level re-times it from the same verification."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from followup_factories import MONDAY_9, RM_ID, TaskBook, a_client, an_event

from branchline_followup.domain import FollowupPolicy, TaskKind, TaskStatus
from branchline_followup.domain.due_diligence import add_months

pytestmark = pytest.mark.unit

VERIFIED = {"method": "networked_id_check", "document_type": "resident_id"}


def book_at(risk_level: str | None, policy: FollowupPolicy | None = None) -> TaskBook:
    return TaskBook(
        client=a_client().model_copy(update={"risk_level": risk_level}),
        policy=policy or FollowupPolicy(),
    )


@pytest.mark.parametrize(
    ("risk_level", "due"),
    [
        ("low", datetime(2029, 11, 23, 9, 0, tzinfo=UTC)),
        ("medium", datetime(2029, 11, 23, 9, 0, tzinfo=UTC)),
        ("high", datetime(2027, 11, 23, 9, 0, tzinfo=UTC)),
        ("very_high", datetime(2027, 11, 23, 9, 0, tzinfo=UTC)),
        (None, datetime(2029, 11, 23, 9, 0, tzinfo=UTC)),  # not assessed: "otherwise"
    ],
)
def test_d03_a_verification_makes_the_refresh_due_by_risk_level(
    risk_level: str | None, due: datetime
) -> None:
    book = book_at(risk_level)
    event = an_event("client.identity_verified", VERIFIED)

    book.feed(event)

    task = book.one(TaskKind.KYC_REFRESH)
    assert task.due_at == due
    assert task.opened_at == MONDAY_9
    assert task.rule.value == "D-03"
    assert task.assignee == RM_ID
    assert task.source_event_id == event.event_id


@pytest.mark.parametrize(
    ("level", "months"), [("C1", 36), ("C2", 36), ("C3", 36), ("C4", 12), ("C5", 12)]
)
def test_d03_a_reassessment_retimes_the_refresh_from_the_same_verification(
    level: str, months: int
) -> None:
    book = book_at("medium")
    book.feed(an_event("client.identity_verified", VERIFIED))

    book.feed(an_event("client.risk_assessed", {"level": level}, at=add_months(MONDAY_9, 2)))

    assert book.one(TaskKind.KYC_REFRESH).due_at == add_months(MONDAY_9, months)


def test_d03_the_next_verification_completes_the_refresh_and_opens_the_next() -> None:
    book = book_at("high")
    book.feed(an_event("client.identity_verified", VERIFIED))
    later = add_months(MONDAY_9, 11)

    book.feed(an_event("client.identity_verified", VERIFIED, at=later))

    first, second = book.of_kind(TaskKind.KYC_REFRESH)
    assert first.status is TaskStatus.DONE
    assert first.closed_at == later
    assert second.is_open
    assert second.due_at == add_months(later, 12)


def test_d03_a_method_that_does_not_count_refreshes_nothing() -> None:
    book = book_at("high")

    book.feed(an_event("client.identity_verified", {**VERIFIED, "method": "in_person"}))

    assert book.of_kind(TaskKind.KYC_REFRESH) == []


def test_d03_the_periods_and_methods_are_policy() -> None:
    policy = replace(
        FollowupPolicy(),
        kyc_refresh_months={"low": 24, "medium": 24, "high": 6, "very_high": 3},
        kyc_verification_methods=frozenset({"networked_id_check", "video"}),
    )
    book = book_at("very_high", policy)

    book.feed(an_event("client.identity_verified", {**VERIFIED, "method": "video"}))

    assert book.one(TaskKind.KYC_REFRESH).due_at == add_months(MONDAY_9, 3)


def test_d03_account_closure_cancels_the_refresh() -> None:
    book = book_at("low")
    book.feed(an_event("client.identity_verified", VERIFIED))

    book.feed(an_event("client.account_closed", {"reason": "client_request"}))

    assert book.one(TaskKind.KYC_REFRESH).status is TaskStatus.CANCELLED


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (datetime(2026, 1, 31, tzinfo=UTC), 1, datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2027, 2, 28, tzinfo=UTC), 12, datetime(2028, 2, 28, tzinfo=UTC)),
        (datetime(2028, 2, 29, tzinfo=UTC), 12, datetime(2029, 2, 28, tzinfo=UTC)),
        (datetime(2026, 11, 23, 9, tzinfo=UTC), 36, datetime(2029, 11, 23, 9, tzinfo=UTC)),
    ],
)
def test_d03_months_are_calendar_months(start: datetime, months: int, end: datetime) -> None:
    assert add_months(start, months) == end
