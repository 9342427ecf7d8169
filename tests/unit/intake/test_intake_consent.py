"""D-04 consent for personal information; withdrawal; erasure restricts."""

from __future__ import annotations

import pytest
from intake_story import (
    Story,
    accepted,
    consent,
    data_accessed,
    days,
    erasure,
    personal_data,
    refused,
    registered,
    withdrawal,
)

from branchline_shared.events.catalogue import ConsentPurpose, PersonalField

pytestmark = pytest.mark.unit

SERVICE = ConsentPurpose.SERVICE
MARKETING = ConsentPurpose.MARKETING


def test_d04_personal_data_with_consent_is_accepted() -> None:
    story = Story().given(registered(), consent(SERVICE))

    accepted(story.when(personal_data()))


def test_d04_recorded_fields_are_remembered() -> None:
    story = Story().given(registered(), consent(SERVICE), personal_data())

    assert story.state.client.recorded_fields == {PersonalField.NAME, PersonalField.PHONE}


def test_d04_personal_data_without_consent_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(personal_data()), "D-04")

    assert violation.title == "No consent for the purpose"
    assert violation.field == "data.purpose"


def test_d04_personal_data_for_another_purpose_is_refused() -> None:
    story = Story().given(registered(), consent(SERVICE))

    refused(story.when(personal_data(MARKETING)), "D-04")


def test_d04_personal_data_after_consent_expired_is_refused() -> None:
    story = Story().given(registered(), consent(SERVICE, expires_at=days(30)))

    accepted(story.when(personal_data(), at=days(29)))
    refused(story.when(personal_data(), at=days(30)), "D-04")


def test_d04_personal_data_dated_before_the_consent_is_refused() -> None:
    story = Story().given(registered())
    story.given(consent(SERVICE), at=days(2))

    refused(story.when(personal_data(), at=days(1)), "D-04")


def test_d04_personal_data_after_withdrawal_is_refused() -> None:
    story = Story().given(registered(), consent(SERVICE, MARKETING), withdrawal(SERVICE))

    violation = refused(story.when(personal_data(SERVICE)), "D-04")

    assert violation.title == "Consent withdrawn"
    accepted(story.when(personal_data(MARKETING)))


def test_d04_withdrawal_stops_data_even_when_dated_before_it() -> None:
    story = Story().given(registered(), consent(SERVICE))
    earlier = story.now
    story.given(withdrawal(SERVICE))

    refused(story.when(personal_data(), at=earlier), "D-04")


def test_d04_new_consent_after_withdrawal_is_accepted() -> None:
    story = Story().given(registered(), consent(SERVICE), withdrawal(SERVICE), consent(SERVICE))

    accepted(story.when(personal_data()))


def test_d04_personal_data_after_erasure_request_is_refused() -> None:
    story = Story().given(registered(), consent(SERVICE), erasure())

    violation = refused(story.when(personal_data()), "D-04")

    assert violation.title == "Personal data restricted after an erasure request"


def test_d04_personal_data_access_after_erasure_request_is_refused() -> None:
    story = Story().given(registered(), consent(SERVICE), personal_data())
    accepted(story.when(data_accessed()))
    story.given(erasure())

    refused(story.when(data_accessed()), "D-04")


def test_d04_consent_already_expired_when_given_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(consent(SERVICE, expires_at=days(-1)), at=days(0)), "D-04")

    assert violation.field == "data.expires_at"


def test_d04_withdrawal_without_consent_is_accepted() -> None:
    accepted(Story().given(registered()).when(withdrawal(MARKETING)))
