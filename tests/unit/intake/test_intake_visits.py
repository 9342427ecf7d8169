"""D-01 the reception journey, D-01a its handling order, D-03 identity before contracts."""

from __future__ import annotations

import pytest
from intake_story import (
    Story,
    accepted,
    arrived,
    closed,
    documents,
    guidance,
    handled,
    needs,
    next_steps,
    refused,
    registered,
    screened,
    survey,
    verified,
)

from branchline_intake.domain import IntakePolicy
from branchline_shared.events.catalogue import VisitCategory

pytestmark = pytest.mark.unit

CONTRACTS = [
    VisitCategory.ACCOUNT,
    VisitCategory.LOAN,
    VisitCategory.WEALTH_PRODUCT,
    VisitCategory.INSURANCE,
]
NO_DOCUMENTS = [c for c in VisitCategory if c not in CONTRACTS]


def test_d01_full_journey_in_order_is_accepted() -> None:
    story = Story().given(registered(), verified(), screened())

    story.given(
        arrived(),
        needs(VisitCategory.ACCOUNT),
        guidance(),
        documents(complete=True),
        handled(),
        next_steps(),
        closed(),
        survey(),
    )

    visit = story.state.visits["V-1"]
    assert visit.closed_at is not None
    assert visit.business_handled == 1
    assert visit.guidance_given
    assert visit.next_steps_explained


def test_d01_step_of_unknown_visit_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(needs(VisitCategory.DEPOSIT, visit_id="V-9")), "D-01")

    assert violation.title == "Unknown visit"
    assert violation.field == "data.visit_id"


@pytest.mark.parametrize(
    "step",
    [needs(VisitCategory.DEPOSIT), guidance(), documents(), handled(), next_steps(), closed()],
    ids=lambda p: type(p).__name__,
)
def test_d01_step_after_visit_closed_is_refused(step: object) -> None:
    story = Story().given(registered(), arrived(), closed())

    violation = refused(story.when(step), "D-01")  # type: ignore[arg-type]

    assert violation.title == "Visit already closed"


def test_d01_same_visit_id_arriving_twice_is_refused() -> None:
    story = Story().given(registered(), arrived("V-1"), closed("V-1"))

    violation = refused(story.when(arrived("V-1")), "D-01")

    assert violation.title == "Visit already exists"


def test_d01_second_open_visit_at_same_branch_is_refused() -> None:
    story = Story().given(registered(), arrived("V-1"))

    violation = refused(story.when(arrived("V-2")), "D-01")

    assert "V-1" in violation.detail


def test_d01_open_visit_at_another_branch_is_accepted() -> None:
    story = Story().given(registered(), arrived("V-1"))

    accepted(story.when(arrived("V-2"), branch_id="BR-002"))


def test_d01_new_visit_after_the_previous_closed_is_accepted() -> None:
    story = Story().given(registered(), arrived("V-1"), closed("V-1"))

    accepted(story.when(arrived("V-2")))


def test_d01_survey_of_unknown_visit_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(survey("V-404")), "D-01")

    assert violation.field == "data.visit_id"


def test_d01_survey_without_visit_is_accepted() -> None:
    accepted(Story().given(registered()).when(survey(None)))


def test_d01a_business_before_needs_confirmed_is_refused() -> None:
    story = Story().given(registered(), arrived())

    violation = refused(story.when(handled()), "D-01a")

    assert violation.title == "Needs not confirmed"


@pytest.mark.parametrize("category", CONTRACTS)
def test_d01a_business_before_documents_checked_is_refused(category: VisitCategory) -> None:
    story = Story().given(registered(), verified(), screened(), arrived(), needs(category))

    violation = refused(story.when(handled()), "D-01a")

    assert violation.title == "Documents not checked complete"


@pytest.mark.parametrize("category", CONTRACTS)
def test_d01a_business_after_incomplete_documents_is_refused(category: VisitCategory) -> None:
    story = Story().given(registered(), verified(), screened(), arrived(), needs(category))
    story.given(documents(complete=False))

    refused(story.when(handled()), "D-01a")


def test_d01a_business_after_documents_completed_on_second_check_is_accepted() -> None:
    story = Story().given(
        registered(), verified(), screened(), arrived(), needs(VisitCategory.LOAN)
    )
    story.given(documents(complete=False), documents(complete=True))

    accepted(story.when(handled()))


def test_d01a_changed_need_voids_the_documents_check() -> None:
    story = Story().given(
        registered(), verified(), screened(), arrived(), needs(VisitCategory.ACCOUNT)
    )
    story.given(documents(complete=True), needs(VisitCategory.LOAN))

    refused(story.when(handled()), "D-01a")


@pytest.mark.parametrize("category", NO_DOCUMENTS)
def test_d01a_business_without_documents_for_simple_needs_is_accepted(
    category: VisitCategory,
) -> None:
    story = Story().given(registered(), arrived(), needs(category))

    accepted(story.when(handled()))


@pytest.mark.parametrize("category", CONTRACTS)
def test_d03_contract_business_before_identity_verified_is_refused(
    category: VisitCategory,
) -> None:
    story = Story().given(registered(), arrived(), needs(category), documents(complete=True))

    violation = refused(story.when(handled()), "D-03")

    assert violation.title == "Identity not verified"


def test_d03_identity_verified_later_than_the_business_is_refused() -> None:
    story = Story().given(registered(), arrived(), needs(VisitCategory.ACCOUNT), documents())
    business = story.event(handled())
    story.given(verified(), screened())  # recorded first, but it happened after the business

    violation = refused(story.when(handled(), at=business.occurred_at), "D-03")

    assert "identity" in violation.detail


def test_d03_narrow_policy_lets_loan_business_pass_without_identity() -> None:
    narrow = IntakePolicy(identity_required_categories=frozenset({VisitCategory.ACCOUNT}))
    story = Story(policy=narrow).given(registered(), arrived(), needs(VisitCategory.LOAN))
    story.given(documents(complete=True))

    accepted(story.when(handled()))
