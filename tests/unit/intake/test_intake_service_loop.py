"""D-09 account closure and reopening; D-17 promises renegotiated before their deadline and
corrective actions planned and completed once (intake's guards)."""

from __future__ import annotations

from datetime import datetime

import pytest
from intake_story import (
    Story,
    accepted,
    acknowledged,
    answered,
    complaint_closed,
    confirmed_by_client,
    days,
    lifecycle_facts,
    minutes,
    opened,
    received,
    refused,
    registered,
    resolved,
    verified,
)

from branchline_shared.domain.classification import LifecyclePolicy, lifecycle_stage
from branchline_shared.events import catalogue as c

pytestmark = pytest.mark.unit


def closed(reason: c.AccountClosureReason = c.AccountClosureReason.RELOCATION) -> c.EventPayload:
    return c.ClientAccountClosed(reason=reason)


def reopened() -> c.EventPayload:
    return c.ClientAccountReopened(reason=c.AccountReopeningReason.CLIENT_REQUEST)


def promised_update(at: datetime) -> c.ComplaintProgressReported:
    return c.ComplaintProgressReported(complaint_id="K-1", note="vendor asked", next_update_by=at)


def renegotiated_complaint(to: datetime) -> c.ComplaintPromiseRenegotiated:
    return c.ComplaintPromiseRenegotiated(
        complaint_id="K-1",
        promised_by=to,
        reason=c.RenegotiationReason.AWAITING_THIRD_PARTY,
        alternative="manager calls back",
        client_told=True,
    )


def renegotiated_consultation(to: datetime) -> c.ConsultationPromiseRenegotiated:
    return c.ConsultationPromiseRenegotiated(
        consultation_id="Q-1",
        promised_by=to,
        reason=c.RenegotiationReason.FURTHER_INVESTIGATION,
        alternative="answer by e-mail",
        client_told=True,
    )


def planned(action_id: str = "CA-1", due: datetime | None = None) -> c.EventPayload:
    return c.ComplaintCorrectiveActionPlanned(
        complaint_id="K-1",
        action_id=action_id,
        root_cause=c.RootCause.PROCESS,
        action_kind=c.CorrectiveActionKind.PROCESS_CHANGE,
        owner_id="sup-3",
        due_at=due or days(30),
    )


def action_done(action_id: str = "CA-1") -> c.EventPayload:
    return c.ComplaintCorrectiveActionCompleted(complaint_id="K-1", action_id=action_id)


# --- D-09 account closure ---


def test_d09_closure_churns_the_client_until_reopened() -> None:
    story = Story().given(registered(), verified())
    accepted(story.when(closed()))
    story.given(closed(), at=days(1))

    policy = LifecyclePolicy()
    assert lifecycle_stage(lifecycle_facts(story.state), days(2), policy) is (
        c.LifecycleStage.CHURNED
    )
    story.given(reopened(), at=days(3))
    assert lifecycle_stage(lifecycle_facts(story.state), days(4), policy) is not (
        c.LifecycleStage.CHURNED
    )


def test_d09_a_closed_account_is_not_closed_again() -> None:
    story = Story().given(registered(), closed())

    refused(story.when(closed()), "D-09")


def test_d09_only_a_closed_account_is_reopened() -> None:
    story = Story().given(registered())

    refused(story.when(reopened()), "D-09")


def test_d17_renegotiation_without_telling_the_client_is_not_a_valid_payload() -> None:
    with pytest.raises(ValueError, match="client_told"):
        c.ComplaintPromiseRenegotiated(
            complaint_id="K-1",
            promised_by=days(2),
            reason=c.RenegotiationReason.OTHER,
            alternative="none",
            client_told=False,
        )


# --- D-17 complaint progress promises ---


def _complaint_with_promise(deadline: datetime) -> Story:
    story = Story().given(registered(), received(), acknowledged())
    story.given(promised_update(deadline), at=minutes(10))
    return story


def test_d17_promise_renegotiated_before_its_deadline_is_accepted() -> None:
    story = _complaint_with_promise(days(1))

    accepted(story.when(renegotiated_complaint(days(3)), at=minutes(600)))


def test_d17_promise_renegotiated_after_its_deadline_is_refused() -> None:
    story = _complaint_with_promise(days(1))

    violation = refused(story.when(renegotiated_complaint(days(3)), at=days(1)), "D-17")
    assert violation.title == "Promise already missed"


def test_d17_renegotiation_needs_an_open_promise() -> None:
    story = Story().given(registered(), received(), acknowledged())

    refused(story.when(renegotiated_complaint(days(3))), "D-17")


def test_d17_new_deadline_lies_after_the_renegotiation() -> None:
    story = _complaint_with_promise(days(1))

    violation = refused(story.when(renegotiated_complaint(minutes(30)), at=minutes(60)), "D-17")
    assert violation.field == "data.promised_by"


def test_d17_a_resolution_fulfils_the_promise() -> None:
    story = _complaint_with_promise(days(1))
    story.given(resolved(), at=minutes(100))

    refused(story.when(renegotiated_complaint(days(3)), at=minutes(200)), "D-17")


def test_d17_promised_update_must_lie_in_the_future() -> None:
    story = Story().given(registered(), received(), acknowledged())

    refused(story.when(promised_update(minutes(1)), at=minutes(5)), "D-17")


# --- D-17 consultation promises ---


def test_d17_consultation_promise_renegotiated_in_time_moves_the_deadline() -> None:
    story = Story().given(registered(), opened())
    story.given(answered(promised_by=days(1)), at=minutes(5))
    story.given(renegotiated_consultation(days(2)), at=minutes(60))

    assert story.state.consultations["Q-1"].promised_by == days(2)
    refused(story.when(renegotiated_consultation(days(4)), at=days(2)), "D-17")


def test_d17_unanswered_consultation_without_promise_cannot_be_renegotiated() -> None:
    story = Story().given(registered(), opened())

    refused(story.when(renegotiated_consultation(days(2))), "D-17")


# --- D-17 corrective actions ---


def test_d17_corrective_action_planned_and_completed_once_even_after_closure() -> None:
    story = Story().given(
        registered(), received(), acknowledged(), resolved(), confirmed_by_client()
    )
    story.given(complaint_closed(), planned())

    refused(story.when(planned()), "D-17")
    accepted(story.when(action_done()))
    story.given(action_done())
    refused(story.when(action_done()), "D-17")


def test_d17_unknown_corrective_action_is_not_completed() -> None:
    story = Story().given(registered(), received())

    refused(story.when(action_done("CA-9")), "D-17")


def test_d17_corrective_action_deadline_lies_in_the_future() -> None:
    story = Story().given(registered(), received())

    refused(story.when(planned(due=minutes(0)), at=minutes(10)), "D-17")
