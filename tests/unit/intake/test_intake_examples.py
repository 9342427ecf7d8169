"""The shared example journey is a history intake's rules accept, in order."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from branchline_intake.domain import Accepted, ClientState, DomainEvent, decide, rebuild
from branchline_shared.events.catalogue import ProductSold, parse_payload
from branchline_shared.events.examples import EXAMPLE_JOURNEY

pytestmark = pytest.mark.unit


def test_example_journey_is_accepted_step_by_step() -> None:
    state, log = ClientState(), []
    for number, step in enumerate(EXAMPLE_JOURNEY, start=1):
        candidate = DomainEvent(
            event_id=uuid.UUID(int=number),
            type=step.type,
            occurred_at=datetime.fromisoformat(step.occurred_at),
            payload=parse_payload(step.type, dict(step.data)),
            branch_id="BR-001",
        )
        decision = decide(state, candidate)
        assert isinstance(decision, Accepted), (step.type, decision)
        state = state.apply(decision.event)
        log.append(decision.event)

    sale = next(e.payload for e in log if isinstance(e.payload, ProductSold))
    assert sale.relied_on_assessment_event_id is not None
    assert rebuild(log) == state
    assert state.client.erasure_requested
