"""A member of staff's erasure reaches their texts' submission hashes too (Round 29, #12; D-04;
docs/privacy.md, "Submission hashes"). Mirrors ``test_erased_hash.py`` for the ``#staff/`` key
path: a staff event with a personal text (a training topic, a gift's description) is sealed
under ``#staff/<staff_id>`` and its hash is keyed by a key derived from that data key; the
staff erasure destroys the key (as the followup worker's erasure job does), after which the
stored hash can no longer be reproduced, and a resend is refused 409 D-04."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import (
    SUBJECT_HASH_VERSION,
    IntakeContext,
    subject_hash_key,
    subject_submission_hash,
    submission_hash,
    submit_events,
)
from branchline_intake.domain import RecordedDecider
from branchline_intake.entrypoints.problems import problem_of
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.events.sealing_keys import INSTITUTION_KEY_ID, staff_key_id
from branchline_shared.eventstore.memory import InMemoryEventStore

pytestmark = pytest.mark.unit

_KEY = b"k" * 32
_ADMIN = Actor(id="dpo-1", role="admin")
_AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
_STAFF = "S-1"
_TEXT = "Dorota-Wisniewska-grief-counselling"
_GUESSES = (_TEXT, "Dorota-Wisniewska-grief-counselling-2")


def _ctx() -> tuple[IntakeContext, InMemoryEventStore, InMemoryClientKeyStore]:
    store = InMemoryEventStore()
    keys = InMemoryClientKeyStore()
    ctx = IntakeContext(
        store=store,
        clock=FixedClock(_AT),
        decider=RecordedDecider(),
        topic="t",
        keys=keys,
        hash_key=_KEY,
    )
    return ctx, store, keys


def _staff_event(kind: str, event_id: uuid.UUID, text: str) -> SubmittedEvent:
    """A staff event whose ``text`` is a personal value of the member of staff (sealed)."""
    data: dict[str, Any]
    if kind == "training":
        event_type = "staff.training_recorded"
        data = {"hours": "3", "topic": text, "completed_at": _AT - timedelta(hours=2)}
    else:
        event_type = "staff.gift_recorded"
        data = {"client_id": "C-1", "value": "80", "accepted": False, "description": text}
    return SubmittedEvent.model_validate(
        {
            "event_id": event_id,
            "type": event_type,
            "occurred_at": _AT - timedelta(hours=1),
            "staff_id": _STAFF,
            "branch_id": "BR-001",
            "actor": {"id": "dpo-1", "role": "admin"},
            "data": data,
        }
    )


def _submit(ctx: IntakeContext, item: SubmittedEvent) -> Outcome:
    [outcome] = asyncio.run(submit_events(ctx, [item], submitted_by=_ADMIN))
    return outcome


def _stored_hash(store: InMemoryEventStore, event_id: uuid.UUID) -> bytes:
    digest = store._state.by_id[event_id].submission_hash
    assert digest is not None
    return digest


@pytest.mark.parametrize("kind", ["training", "gift"])
def test_d04_a_staff_texts_hash_is_keyed_by_their_staff_key_and_erased_with_it(kind: str) -> None:
    """Before Round 29 the stored hash was ``submission_hash(item, service secret)``: after
    the staff erasure it was reproducible from a guessed clear text."""
    ctx, store, keys = _ctx()
    sent = uuid.uuid4()
    item = _staff_event(kind, sent, _TEXT)
    outcome = _submit(ctx, item)
    assert isinstance(outcome, Accepted), outcome
    assert not outcome.duplicate
    stored = _stored_hash(store, sent)
    key_id = staff_key_id(_STAFF)
    assert key_id.startswith("#staff/")
    data_key = asyncio.run(keys.key_for(key_id))
    assert stored[:1] == SUBJECT_HASH_VERSION
    assert len(stored) == 33
    assert stored == subject_submission_hash(item, subject_hash_key(data_key, _KEY))
    # Before the erasure the same submission again is a duplicate.
    again = _submit(ctx, item)
    assert isinstance(again, Accepted), again
    assert again.duplicate, again

    asyncio.run(keys.destroy(key_id))  # the staff erasure (followup's erasure job, D-04)
    # What is left (the service secret, the store) reproduces it for no guess.
    for guess in _GUESSES:
        guessed = _staff_event(kind, sent, guess)
        assert submission_hash(guessed, _KEY) not in (stored, stored[1:])
    # A resend is answered D-04, never as a duplicate (its hash can no longer be made).
    for guess in _GUESSES:
        after = _submit(ctx, _staff_event(kind, sent, guess))
        assert isinstance(after, Refused), after
        assert (after.reason, after.rule) == (Refusal.STAFF_ERASED, "D-04")


def test_d04_another_staff_members_key_does_not_make_the_hash() -> None:
    """The key is the subject's own: the same text under another member of staff's key
    (or the client's named in the event) does not reproduce it."""
    ctx, store, keys = _ctx()
    sent = uuid.uuid4()
    item = _staff_event("gift", sent, _TEXT)
    assert isinstance(_submit(ctx, item), Accepted)
    stored = _stored_hash(store, sent)
    for other in (staff_key_id("S-2"), "C-1"):
        other_key = asyncio.run(keys.key_for(other))
        assert stored != subject_submission_hash(item, subject_hash_key(other_key, _KEY))


@pytest.mark.parametrize("kind", ["training", "gift"])
def test_d04_an_erased_member_of_staffs_new_text_is_refused_as_theirs(kind: str) -> None:
    """The HTTP answer (``problem_of``, as ``POST /v1/events`` and the batch send it) to a new
    text of a member of staff whose key the erasure destroyed: 409 ``rule-violation`` D-04, as
    before (clients branch on the type), titled for what happened to whom (Round 30, #12), the
    detail naming the member of staff by id and no value of theirs. Before, the title was a
    client's ("Client erased") and the detail called their key id a client's."""
    ctx, _, keys = _ctx()
    asyncio.run(keys.destroy(staff_key_id(_STAFF)))
    outcome = _submit(ctx, _staff_event(kind, uuid.uuid4(), _TEXT))
    assert isinstance(outcome, Refused), outcome
    problem = problem_of(outcome)
    assert problem.status == 409
    assert problem.body() == {
        "type": "https://branchline.dev/problems/rule-violation",
        "title": "Member of staff erased",
        "status": 409,
        "detail": f"the data key of member of staff {_STAFF} was destroyed (D-04)",
        "rule": "D-04",
    }


def _shelf_event(event_id: uuid.UUID) -> SubmittedEvent:
    """A product shelf event (D-13): its name is sealed under the institution's key."""
    return SubmittedEvent.model_validate(
        {
            "event_id": event_id,
            "type": "product.approved",
            "occurred_at": _AT - timedelta(hours=1),
            "product_id": "P-1",
            "actor": {"id": "gov-1", "role": "product_governance"},
            "data": {
                "name": "Balanced Growth Fund",
                "category": "fund",
                "risk": "R3",
                "eligible_client_types": ["individual"],
            },
        }
    )


def test_d04_a_shelf_text_under_a_destroyed_institution_key_is_refused_as_the_institutions() -> (
    None
):
    """Were the institution's key (``#institution``, the shelf's texts) ever destroyed (no
    command does), a shelf event's text is refused 409 ``rule-violation`` D-04 titled for
    what happened (Round 31, #12), the detail naming no client: until then it was titled
    "Client erased" and its detail called ``#institution`` a client."""
    ctx, _, keys = _ctx()
    assert isinstance(_submit(ctx, _shelf_event(uuid.uuid4())), Accepted)
    asyncio.run(keys.destroy(INSTITUTION_KEY_ID))
    outcome = _submit(ctx, _shelf_event(uuid.uuid4()))
    assert isinstance(outcome, Refused), outcome
    assert (outcome.reason, outcome.rule) == (Refusal.INSTITUTION_KEY_DESTROYED, "D-04")
    problem = problem_of(outcome)
    assert problem.status == 409
    assert problem.body() == {
        "type": "https://branchline.dev/problems/rule-violation",
        "title": "Institution's key destroyed",
        "status": 409,
        "detail": "the institution's data key (the product shelf's texts) was destroyed",
        "rule": "D-04",
    }
