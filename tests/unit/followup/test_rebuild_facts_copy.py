"""The rebuild's and the worker's units' copies of a client's facts are what ``copy.copy``
makes (#12)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from decimal import Decimal

import pytest
from followup_factories import MONDAY_9

from branchline_followup.adapters.rebuild_target import _copied
from branchline_followup.adapters.unit_of_work import copied_facts
from branchline_followup.domain.records import ClientFacts

pytestmark = pytest.mark.unit


def every_field_set() -> ClientFacts:
    return ClientFacts(
        client_id="C-1",
        client_type="individual",
        rm_id="RM-1",
        branch_id="B-1",
        lifecycle_stage="new",
        registered_at=MONDAY_9,
        last_event_at=MONDAY_9 + timedelta(days=3),
        last_contact_at=MONDAY_9 + timedelta(days=1),
        risk_tolerance="moderate",
        risk_level="medium",
        identity_verified_at=MONDAY_9 + timedelta(hours=1),
        first_business_at=MONDAY_9 + timedelta(hours=2),
        last_business_at=MONDAY_9 + timedelta(days=2),
        assets_under_management=Decimal("1234.56"),
        account_closed_at=None,
        stage_as_of=MONDAY_9 + timedelta(days=3),
        stage_changes_at=MONDAY_9 + timedelta(days=92),
        last_business_event_id=uuid.uuid4(),
    )


@pytest.mark.parametrize(
    "facts",
    [
        every_field_set(),
        ClientFacts("C-2", "company", "RM-2", None, "prospect", MONDAY_9, MONDAY_9),
    ],
)
@pytest.mark.parametrize("copier", [_copied, copied_facts], ids=["rebuild", "unit_of_work"])
def test_a_copy_holds_the_same_values_and_is_its_own(
    facts: ClientFacts, copier: Callable[[ClientFacts], ClientFacts]
) -> None:
    copied = copier(facts)
    expected = copy.copy(facts)
    assert type(copied) is ClientFacts
    assert copied == facts == expected
    assert vars(copied) == vars(expected)
    for field in fields(ClientFacts):
        assert getattr(copied, field.name) is getattr(facts, field.name)
    assert copied is not facts
    copied.lifecycle_stage = "mature"
    copied.stage_changes_at = None
    assert (facts.lifecycle_stage, facts.stage_changes_at) != ("mature", None)
