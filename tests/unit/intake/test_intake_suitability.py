"""D-05 suitability (assessment, R <= C, disclosure, terms), D-03 identity before a sale, and
the as-of proof a sale records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from intake_story import (
    Story,
    accepted,
    assessed,
    days,
    disclosed,
    recommended,
    refused,
    registered,
    rerated,
    screened,
    sold,
    terms,
    verified,
)

from branchline_intake.domain import IntakePolicy, add_months
from branchline_shared.events.catalogue import (
    ProductCategory,
    ProductRisk,
    ProductSold,
    RiskTolerance,
)

pytestmark = pytest.mark.unit

C3 = RiskTolerance.C3
R3, R4 = ProductRisk.R3, ProductRisk.R4


def _sale(story: Story) -> ProductSold:
    payload = story.history[-1].payload
    assert isinstance(payload, ProductSold)
    return payload


# --- recommendation -----------------------------------------------------------------------------


@pytest.mark.parametrize("risk", [ProductRisk.R1, ProductRisk.R2, ProductRisk.R3])
def test_d05_recommendation_within_tolerance_is_accepted(risk: ProductRisk) -> None:
    story = Story().onboarded(C3)

    accepted(story.when(recommended(risk=risk)))


@pytest.mark.parametrize("risk", [ProductRisk.R4, ProductRisk.R5])
def test_d05_recommendation_above_tolerance_is_refused(risk: ProductRisk) -> None:
    story = Story().onboarded(C3)

    violation = refused(story.when(recommended(risk=risk)), "D-05")

    assert violation.title == "Product risk above the client's tolerance"
    assert violation.field == "data.product_risk"


def test_d05_recommendation_without_assessment_is_refused() -> None:
    story = Story().given(registered(), verified(), screened())

    violation = refused(story.when(recommended()), "D-05")

    assert violation.title == "No risk assessment"


def test_d05_recommendation_after_default_validity_is_refused() -> None:
    story = Story().given(registered(), verified(), screened())
    story.given(assessed(C3), at=days(0))
    expiry = add_months(days(0), 12)

    accepted(story.when(recommended(), at=expiry - timedelta(seconds=1)))
    violation = refused(story.when(recommended(), at=expiry), "D-05")

    assert violation.title == "Risk assessment expired"


def test_d05_recommendation_after_stated_validity_is_refused() -> None:
    story = Story().given(registered())
    story.given(assessed(C3, valid_until=days(10)), at=days(0))

    refused(story.when(recommended(), at=days(10)), "D-05")


def test_d05_policy_validity_is_configurable() -> None:
    story = Story(policy=IntakePolicy(assessment_validity_months=1)).given(registered())
    story.given(assessed(C3), at=days(0))

    refused(story.when(recommended(), at=days(40)), "D-05")


def test_d05_assessment_gets_its_validity_written_in() -> None:
    story = Story().given(registered())
    event = accepted(story.when(assessed(C3), at=days(0)))

    assert event.payload == assessed(C3, valid_until=add_months(days(0), 12))


def test_d05_assessment_already_expired_when_made_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(assessed(C3, valid_until=days(-1)), at=days(0)), "D-05")

    assert violation.field == "data.valid_until"


def test_d05_later_conservative_reassessment_refuses_what_was_allowed() -> None:
    story = Story().onboarded(RiskTolerance.C4)
    accepted(story.when(recommended(risk=R4)))
    story.given(assessed(RiskTolerance.C2))

    refused(story.when(recommended(risk=R4)), "D-05")


# --- sale ---------------------------------------------------------------------------------------


def test_d05_sale_after_assessment_disclosure_and_terms_is_accepted_with_proof() -> None:
    story = Story().onboarded(C3)
    identity, screening, assessment = story.history[1], story.history[2], story.history[3]
    story.ready_to_sell("P-1", R3)
    disclosure, confirmation = story.history[-2], story.history[-1]
    rating = story.shelf["P-1"].ratings[0]
    qualification = story.staff["rm-42"].qualification_at(ProductCategory.FUND, story.now)
    assert qualification is not None

    event = accepted(story.when(sold("P-1")))

    assert event.payload == sold(
        "P-1",
        risk=R3,
        relied_on_identity_event_id=identity.event_id,
        relied_on_screening_event_id=screening.event_id,
        relied_on_assessment_event_id=assessment.event_id,
        relied_on_disclosure_event_id=disclosure.event_id,
        relied_on_terms_event_id=confirmation.event_id,
        relied_on_rating_event_id=rating.event_id,
        relied_on_qualification_event_id=qualification.event_id,
    )


def test_d05_proof_sent_by_the_caller_is_replaced() -> None:
    story = Story().onboarded(C3).ready_to_sell()
    forged = story.history[0].event_id

    event = accepted(story.when(sold(relied_on_assessment_event_id=forged)))

    assert isinstance(event.payload, ProductSold)
    assert event.payload.relied_on_assessment_event_id == story.history[3].event_id


def test_d05_proof_names_the_assessment_valid_at_the_sale_time() -> None:
    story = Story().given(registered(), verified(), screened())
    story.given(assessed(C3), at=days(1))
    first = story.last()
    story.ready_to_sell()
    story.given(assessed(RiskTolerance.C5), at=days(5))

    event = accepted(story.when(sold(), at=days(3)))  # a late sale, judged at its own time

    assert isinstance(event.payload, ProductSold)
    assert event.payload.relied_on_assessment_event_id == first.event_id


def test_d03_sale_before_identity_verified_is_refused() -> None:
    story = Story().given(registered(), assessed(C3)).ready_to_sell()

    violation = refused(story.when(sold()), "D-03")

    assert violation.title == "Identity not verified"


def test_d05_sale_without_assessment_is_refused() -> None:
    story = Story().given(registered(), verified(), screened(), disclosed(risk=R3), terms())

    violation = refused(story.when(sold()), "D-05")

    assert violation.title == "No risk assessment"


def test_d05_sale_with_expired_assessment_is_refused() -> None:
    story = Story().given(registered(), verified(), screened())
    story.given(assessed(C3, valid_until=days(30)), at=days(0))
    story.ready_to_sell()

    violation = refused(story.when(sold(), at=days(31)), "D-05")

    assert violation.title == "Risk assessment expired"


def test_d05_sale_above_tolerance_is_refused() -> None:
    story = Story().onboarded(C3).given(disclosed(risk=R4), terms())

    violation = refused(story.when(sold()), "D-05")

    assert violation.title == "Product risk above the client's tolerance"


def test_d13_sale_stating_a_risk_other_than_the_shelf_is_refused() -> None:
    story = Story().onboarded(C3).ready_to_sell("P-1", R3)

    violation = refused(story.when(sold(risk=ProductRisk.R2)), "D-13")

    assert violation.title == "Product risk disagrees with the shelf"
    assert violation.field == "data.product_risk"


def test_d13_sale_of_a_product_not_on_the_shelf_is_refused() -> None:
    story = Story(auto_shelf=False).onboarded(C3)

    violation = refused(story.when(sold()), "D-13")

    assert violation.title == "Product not on the shelf"
    assert violation.field == "data.product_id"


def test_d05_sale_stating_its_risk_without_recommendation_is_accepted() -> None:
    story = Story().onboarded(C3).given(disclosed(), terms())

    accepted(story.when(sold(risk=R3)))


def test_d05_sale_without_disclosure_is_refused() -> None:
    story = Story().onboarded(C3).given(recommended(), terms())

    violation = refused(story.when(sold()), "D-05")

    assert violation.title == "Risks not disclosed"


def test_d05_sale_with_unacknowledged_disclosure_is_refused() -> None:
    story = Story().onboarded(C3).given(recommended(), disclosed(acknowledged=False), terms())

    violation = refused(story.when(sold()), "D-05")

    assert violation.title == "Risk disclosure not acknowledged"


def test_d05_sale_after_acknowledgement_is_taken_back_is_refused() -> None:
    story = Story().onboarded(C3).ready_to_sell().given(disclosed(acknowledged=False))

    refused(story.when(sold()), "D-05")


def test_d05_sale_whose_disclosure_understated_the_risk_is_refused() -> None:
    story = Story().onboarded(RiskTolerance.C4)
    story.given(disclosed(risk=R3), terms())
    story.shelve(rerated(R4, effective_at=story.now), product_id="P-1", at=story.now)

    violation = refused(story.when(sold()), "D-05")

    assert violation.title == "Disclosure understated the risk"


def test_d05_sale_without_terms_confirmed_is_refused() -> None:
    story = Story().onboarded(C3).given(recommended(), disclosed())

    violation = refused(story.when(sold()), "D-05")

    assert violation.title == "Terms not confirmed"


def test_d05_sale_relying_on_a_disclosure_of_another_product_is_refused() -> None:
    story = Story().onboarded(C3).ready_to_sell("P-1").given(recommended("P-2"))

    refused(story.when(sold("P-2")), "D-05")


def test_d05_sale_dated_before_its_disclosure_is_refused() -> None:
    story = Story().onboarded(C3).given(recommended())
    too_early = story.now
    story.given(disclosed(), terms())

    refused(story.when(sold(), at=too_early), "D-05")


def test_d05_second_sale_needs_a_fresh_disclosure_and_confirmation() -> None:
    story = Story().onboarded(C3).ready_to_sell().given(sold())

    refused(story.when(sold()), "D-05")
    story.given(disclosed(), terms())
    accepted(story.when(sold()))


def test_d05_current_assessment_is_the_latest_made() -> None:
    story = Story().given(registered())
    story.given(assessed(RiskTolerance.C2), at=days(10))
    story.given(assessed(RiskTolerance.C4), at=days(5))  # recorded later, made earlier

    current = story.state.client.current_assessment

    assert current is not None
    assert current.level is RiskTolerance.C2
