"""A refused event's id sent again (Round 28, #12; docs/rules.md D-05: the refusal is itself
recorded; docs/api.md: a reused ``event_id`` with other content is ``idempotency-conflict``).

A refusal by a rule is recorded with the refused submission's hash, as an accepted event is
stored with its own: the same submission sent again is decided again (refused again, recorded
once; or accepted once the rule passes), another submission under the id is answered 409
``idempotency-conflict`` naming ``event_id``, as for an accepted event's id. A refusal
recorded before Round 28 (no hash) is compared by what it kept (Round 29): the refused event
redacted (D-04) and its sender."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from intake_story import submitted_registrations

from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import (
    IntakeContext,
    refusal_event_id,
    submission_hash,
    submit_events,
)
from branchline_intake.domain import RecordedDecider
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.eventstore.memory import InMemoryEventStore

pytestmark = pytest.mark.unit

_KEY = b"k" * 32
_ADMIN = Actor(id="b", role="admin")
_AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _ctx() -> tuple[IntakeContext, InMemoryEventStore]:
    store = InMemoryEventStore()
    ctx = IntakeContext(
        store=store,
        clock=FixedClock(_AT),
        decider=RecordedDecider(),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=_KEY,
    )
    return ctx, store


def _registration(client: str, event_id: uuid.UUID) -> SubmittedEvent:
    [item] = submitted_registrations(1, _AT)
    return item.model_copy(update={"client_id": client, "event_id": event_id})


def _consent(client: str, event_id: uuid.UUID) -> SubmittedEvent:
    """A consent for a client never registered: refused by D-09, its refusal recorded."""
    return _registration(client, event_id).model_copy(
        update={"type": "client.consent_granted", "data": {"purposes": ["service"]}}
    )


def _submit(ctx: IntakeContext, *items: SubmittedEvent) -> list[Outcome]:
    return asyncio.run(submit_events(ctx, list(items), submitted_by=_ADMIN))


def _refused_d09(outcome: Outcome) -> None:
    assert isinstance(outcome, Refused), outcome
    assert (outcome.reason, outcome.rule) == (Refusal.RULE_VIOLATION, "D-09")


def _reused(outcome: Outcome, event_id: uuid.UUID) -> None:
    assert isinstance(outcome, Refused), outcome
    assert outcome.reason is Refusal.IDEMPOTENCY_CONFLICT
    assert outcome.issues is not None
    assert [(i.field, i.type) for i in outcome.issues] == [("event_id", "conflict")]
    assert str(event_id) in outcome.detail


def test_d05_a_refusal_is_recorded_with_the_refused_submissions_hash() -> None:
    ctx, store = _ctx()
    sent = uuid.uuid4()
    consent = _consent("C-1", sent)
    [outcome] = _submit(ctx, consent)
    _refused_d09(outcome)
    stored = store._state.by_id[refusal_event_id(sent)]
    assert stored.submission_hash == submission_hash(consent, _KEY)


@pytest.mark.parametrize("other", ["another client's registration", "the consent changed"])
def test_d05_another_event_under_a_refused_events_id_is_a_reused_id(other: str) -> None:
    """On main the other event was decided as new: the registration accepted under the
    refused consent's id (or the changed consent refused by D-09 again, as if resent)."""
    ctx, store = _ctx()
    sent = uuid.uuid4()
    [first] = _submit(ctx, _consent("C-1", sent))
    _refused_d09(first)
    again = {
        "another client's registration": _registration("C-2", sent),
        "the consent changed": _consent("C-1", sent).model_copy(
            update={"data": {"purposes": ["marketing"]}}
        ),
    }[other]
    [outcome] = _submit(ctx, again)
    _reused(outcome, sent)
    assert sent not in store._state.by_id
    assert asyncio.run(store.read_stream("client-C-2")) == []
    assert len(asyncio.run(store.read_stream("refusals-C-1"))) == 1


def test_d05_the_same_refused_event_sent_again_is_decided_again_and_recorded_once() -> None:
    ctx, store = _ctx()
    sent = uuid.uuid4()
    consent = _consent("C-1", sent)
    [first] = _submit(ctx, consent)
    [again] = _submit(ctx, consent)
    _refused_d09(first)
    _refused_d09(again)
    assert len(asyncio.run(store.read_stream("refusals-C-1"))) == 1
    # the rule passes now (the client registered): the same consent is accepted at last
    [registered] = _submit(ctx, _registration("C-1", uuid.uuid4()))
    [accepted] = _submit(ctx, consent)
    assert isinstance(registered, Accepted)
    assert isinstance(accepted, Accepted), accepted
    assert not accepted.duplicate
    assert accepted.position.event_id == sent


def _hash_dropped(store: InMemoryEventStore, sent: uuid.UUID) -> None:
    """The refusal of ``sent`` as recorded before Round 28: no submission hash."""
    refusal = refusal_event_id(sent)
    store._state.by_id[refusal] = dataclasses.replace(
        store._state.by_id[refusal], submission_hash=None
    )


@pytest.mark.parametrize(
    "other",
    ["another client's registration", "the consent changed", "sent by another"],
)
def test_d05_another_event_under_a_hashless_refusals_id_is_a_reused_id(other: str) -> None:
    """A refusal recorded before Round 28 has no hash; another submission under its id,
    told by what the refusal kept (the refused event redacted, its sender), is 409 naming
    ``event_id`` (Round 29). Until then it was decided as new: the registration accepted
    under the refused id."""
    ctx, store = _ctx()
    sent = uuid.uuid4()
    [first] = _submit(ctx, _consent("C-1", sent))
    _refused_d09(first)
    _hash_dropped(store, sent)
    again = {
        "another client's registration": _registration("C-2", sent),
        "the consent changed": _consent("C-1", sent).model_copy(
            update={"data": {"purposes": ["marketing"]}}
        ),
        "sent by another": None,
    }[other]
    if again is None:
        [outcome] = asyncio.run(
            submit_events(ctx, [_consent("C-1", sent)], submitted_by=Actor(id="o", role="admin"))
        )
    else:
        [outcome] = _submit(ctx, again)
    _reused(outcome, sent)
    assert sent not in store._state.by_id
    assert asyncio.run(store.read_stream("client-C-2")) == []
    assert len(asyncio.run(store.read_stream("refusals-C-1"))) == 1


def test_d05_the_same_event_under_a_hashless_refusals_id_is_decided_as_before() -> None:
    """Guard: the same consent resent under a hash-less refusal's id is decided again (refused
    again, recorded once; accepted once the client registered), as it was before."""
    ctx, store = _ctx()
    sent = uuid.uuid4()
    consent = _consent("C-1", sent)
    [first] = _submit(ctx, consent)
    _hash_dropped(store, sent)
    [again] = _submit(ctx, consent)
    assert again == first
    assert len(asyncio.run(store.read_stream("refusals-C-1"))) == 1
    [registered] = _submit(ctx, _registration("C-1", uuid.uuid4()))
    [accepted] = _submit(ctx, consent)
    assert isinstance(registered, Accepted)
    assert isinstance(accepted, Accepted), accepted
    assert accepted.position.event_id == sent


def test_d05_another_event_under_an_id_refused_earlier_in_the_batch_is_a_reused_id() -> None:
    """In one batch: the first item refused (D-09, recorded), a later one under its id with
    other content 409, the same content again the first's refusal. On main the later items
    were all answered with the first's refusal."""
    ctx, store = _ctx()
    sent = uuid.uuid4()
    consent = _consent("C-1", sent)
    first, other, same = _submit(ctx, consent, _registration("C-2", sent), consent)
    _refused_d09(first)
    _reused(other, sent)
    assert same == first
    assert len(asyncio.run(store.read_stream("refusals-C-1"))) == 1
    assert asyncio.run(store.read_stream("client-C-2")) == []
