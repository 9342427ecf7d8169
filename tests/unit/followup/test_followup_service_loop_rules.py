"""D-07 feedback responses, D-17 promises and corrective actions, D-09 account closure: the
pure rules of the service loop, fed event by event into an in-memory task book."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from followup_factories import MONDAY_9, RM_ID, TaskBook, an_event

from branchline_followup.domain import FollowupPolicy, TaskKind, TaskStatus
from branchline_followup.domain.service_loop import feedback_subject
from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX

pytestmark = pytest.mark.unit

HOUR = timedelta(hours=1)
GOOD = {
    "attitude": 90,
    "professionalism": 90,
    "response_speed": 90,
    "risk_management": 90,
    "convenience": 90,
}


def survey(scores: dict[str, int] | None = None, comment: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"scores": scores or GOOD}
    if comment is not None:
        data["comment"] = comment
    return data


# --- D-07 every feedback answered within 24 hours ---


def test_d07_a_survey_with_a_low_score_needs_a_response_within_24_hours() -> None:
    book = TaskBook()
    event = an_event("feedback.survey_answered", survey({**GOOD, "convenience": 59}))

    book.feed(event)

    task = book.one(TaskKind.FEEDBACK_RESPONSE)
    assert task.due_at == MONDAY_9 + 24 * HOUR
    assert task.assignee == RM_ID
    assert task.subject == feedback_subject(event.event_id)
    assert task.rule.value == "D-07"


def test_d07_a_score_at_the_threshold_is_not_low() -> None:
    book = TaskBook()

    book.feed(an_event("feedback.survey_answered", survey({**GOOD, "attitude": 60})))

    assert book.of_kind(TaskKind.FEEDBACK_RESPONSE) == []


def test_d07_the_low_score_threshold_is_configurable() -> None:
    book = TaskBook(policy=FollowupPolicy(feedback_low_score=95))

    book.feed(an_event("feedback.survey_answered", survey()))

    assert len(book.of_kind(TaskKind.FEEDBACK_RESPONSE)) == 1


def test_d07_a_commented_survey_needs_a_response_even_with_good_scores() -> None:
    book = TaskBook()

    # the comment arrives sealed: the rule only needs to know that there is one
    book.feed(an_event("feedback.survey_answered", survey(comment=SEALED_PREFIX + "x" * 5000)))

    assert len(book.of_kind(TaskKind.FEEDBACK_RESPONSE)) == 1


def test_d07_other_feedback_needs_a_response_and_the_response_completes_it() -> None:
    book = TaskBook()
    feedback = an_event("feedback.received", {"kind": "suggestion", "comment": "sealed"})
    book.feed(feedback)

    book.feed(
        an_event(
            "feedback.responded",
            {"responds_to_event_id": str(feedback.event_id), "channel": "phone"},
            at=MONDAY_9 + 2 * HOUR,
        )
    )

    task = book.one(TaskKind.FEEDBACK_RESPONSE)
    assert task.status is TaskStatus.DONE
    assert task.met_deadline()


def test_d07_a_response_to_other_feedback_leaves_this_task_open() -> None:
    book = TaskBook()
    book.feed(an_event("feedback.received", {"kind": "concern", "comment": "sealed"}))
    other = an_event("feedback.received", {"kind": "praise", "comment": "sealed"})

    book.feed(
        an_event(
            "feedback.responded",
            {"responds_to_event_id": str(other.event_id), "channel": "phone"},
        )
    )

    assert book.one(TaskKind.FEEDBACK_RESPONSE).is_open


# --- D-17 promises ---


def _complaint(book: TaskBook) -> None:
    book.feed(
        an_event(
            "complaint.received",
            {"complaint_id": "K-1", "severity": "general", "summary": "sealed"},
        )
    )


def progress(at_hours: float, next_update_in: float | None) -> Any:
    data: dict[str, Any] = {"complaint_id": "K-1", "note": "sealed"}
    if next_update_in is not None:
        data["next_update_by"] = (MONDAY_9 + next_update_in * HOUR).isoformat()
    return an_event("complaint.progress_reported", data, at=MONDAY_9 + at_hours * HOUR)


def renegotiated(at_hours: float, to_hours: float, kind: str = "complaint") -> Any:
    ref = {"complaint_id": "K-1"} if kind == "complaint" else {"consultation_id": "Q-1"}
    return an_event(
        f"{kind}.promise_renegotiated",
        {
            **ref,
            "promised_by": (MONDAY_9 + to_hours * HOUR).isoformat(),
            "reason": "awaiting_third_party",
            "alternative": "sealed",
            "client_told": True,
        },
        at=MONDAY_9 + at_hours * HOUR,
    )


def test_d17_a_promised_update_is_due_and_the_next_report_keeps_it() -> None:
    book = TaskBook()
    _complaint(book)
    book.feed(progress(1, next_update_in=10))

    promise = book.one(TaskKind.COMPLAINT_PROGRESS_PROMISE)
    assert promise.due_at == MONDAY_9 + 10 * HOUR
    assert promise.rule.value == "D-17"

    book.feed(progress(8, next_update_in=None))
    assert book.one(TaskKind.COMPLAINT_PROGRESS_PROMISE).met_deadline()


def test_d17_renegotiated_before_the_deadline_moves_it() -> None:
    book = TaskBook()
    _complaint(book)
    book.feed(progress(1, next_update_in=10))

    book.feed(renegotiated(5, to_hours=30))

    assert book.one(TaskKind.COMPLAINT_PROGRESS_PROMISE).due_at == MONDAY_9 + 30 * HOUR


def test_d17_renegotiated_after_the_deadline_stays_missed() -> None:
    book = TaskBook()
    _complaint(book)
    book.feed(progress(1, next_update_in=10))

    book.feed(renegotiated(11, to_hours=30))
    book.feed(progress(12, next_update_in=None))

    promise = book.one(TaskKind.COMPLAINT_PROGRESS_PROMISE)
    assert promise.due_at == MONDAY_9 + 10 * HOUR
    assert not promise.met_deadline()


def test_d17_a_resolution_keeps_the_promise() -> None:
    book = TaskBook()
    _complaint(book)
    book.feed(progress(1, next_update_in=10))

    book.feed(
        an_event(
            "complaint.resolved",
            {"complaint_id": "K-1", "resolution": "sealed", "root_cause": "process"},
            at=MONDAY_9 + 2 * HOUR,
        )
    )

    assert book.one(TaskKind.COMPLAINT_PROGRESS_PROMISE).met_deadline()


def test_d17_a_consultation_promise_is_renegotiated_in_time() -> None:
    book = TaskBook()
    book.feed(
        an_event(
            "consultation.opened",
            {"consultation_id": "Q-1", "channel": "online", "question": "fees?"},
        )
    )
    book.feed(
        an_event(
            "consultation.answered",
            {"consultation_id": "Q-1", "promised_by": (MONDAY_9 + 4 * HOUR).isoformat()},
        )
    )

    book.feed(renegotiated(2, to_hours=48, kind="consultation"))

    assert book.one(TaskKind.CONSULTATION_PROMISE).due_at == MONDAY_9 + 48 * HOUR


# --- D-17 corrective actions ---


def test_d17_a_corrective_action_is_a_task_of_its_owner_until_done_after_closure() -> None:
    book = TaskBook()
    _complaint(book)
    book.feed(
        an_event(
            "complaint.corrective_action_planned",
            {
                "complaint_id": "K-1",
                "action_id": "CA-1",
                "root_cause": "process",
                "action_kind": "process_change",
                "owner_id": "sup-3",
                "due_at": (MONDAY_9 + 240 * HOUR).isoformat(),
            },
        )
    )
    book.feed(an_event("complaint.closed", {"complaint_id": "K-1"}, at=MONDAY_9 + 5 * HOUR))

    action = book.one(TaskKind.CORRECTIVE_ACTION)
    assert action.is_open
    assert (action.assignee, action.due_at) == ("sup-3", MONDAY_9 + 240 * HOUR)

    book.feed(
        an_event(
            "complaint.corrective_action_completed",
            {"complaint_id": "K-1", "action_id": "CA-1"},
            at=MONDAY_9 + 100 * HOUR,
        )
    )
    assert book.one(TaskKind.CORRECTIVE_ACTION).met_deadline()


# --- D-09 account closure ---


def test_d09_closure_cancels_product_reviews_and_keeps_feedback_work() -> None:
    book = TaskBook()
    book.feed(an_event("product.sold", {"product_id": "P-1", "amount": "100"}))
    book.feed(an_event("feedback.received", {"kind": "concern", "comment": "sealed"}))

    book.feed(an_event("client.account_closed", {"reason": "relocation"}, at=MONDAY_9 + HOUR))

    assert book.one(TaskKind.PRODUCT_REVIEW).status is TaskStatus.CANCELLED
    assert book.one(TaskKind.FEEDBACK_RESPONSE).is_open
