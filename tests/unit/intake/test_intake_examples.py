"""The shared example journey is a history intake's rules accept, in order."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from tests.support.examples import EXAMPLE_JOURNEY, EXAMPLE_SHELF, JourneyStep

from branchline_intake.domain import Accepted, ClientState, DomainEvent, decide, rebuild
from branchline_intake.domain.related import Related
from branchline_intake.domain.shelf import rebuild_shelf_product
from branchline_intake.domain.staff import rebuild_staff_member
from branchline_shared.events.catalogue import ProductSold, parse_payload


def _event(number: int, step: JourneyStep) -> DomainEvent:
    return DomainEvent(
        event_id=uuid.UUID(int=number),
        type=step.type,
        occurred_at=datetime.fromisoformat(step.occurred_at),
        payload=parse_payload(step.type, dict(step.data)),
        branch_id="BR-001",
        actor_id=step.actor_id,
    )


def _shelf_before(at: datetime) -> Related:
    """The example shelf and staff records as they stood at ``at``."""
    by_subject: dict[tuple[str, str], list[DomainEvent]] = {}
    for number, step in enumerate(EXAMPLE_SHELF, start=1000):
        event = _event(number, step)
        if event.occurred_at <= at and step.subject_id is not None:
            by_subject.setdefault((step.subject_field, step.subject_id), []).append(event)
    return Related(
        products={
            s: rebuild_shelf_product(s, e) for (f, s), e in by_subject.items() if f == "product_id"
        },
        staff={
            s: rebuild_staff_member(s, e) for (f, s), e in by_subject.items() if f == "staff_id"
        },
    )


pytestmark = pytest.mark.unit


def test_example_journey_is_accepted_step_by_step() -> None:
    state, log = ClientState(), []
    for number, step in enumerate(EXAMPLE_JOURNEY, start=1):
        candidate = _event(number, step)
        decision = decide(state, candidate, related=_shelf_before(candidate.occurred_at))
        assert isinstance(decision, Accepted), (step.type, decision)
        state = state.apply(decision.event)
        log.append(decision.event)

    sale = next(e.payload for e in log if isinstance(e.payload, ProductSold))
    assert sale.relied_on_assessment_event_id is not None
    assert rebuild(log) == state
    assert state.client.erasure_requested
