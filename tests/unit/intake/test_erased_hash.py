"""A submission's hash after its subject's erasure (Round 29, #12; docs/privacy.md, "Submission
hashes"; D-04).

The hash stored with an accepted event and with a recorded refusal is an HMAC over the
submission with its personal values in clear. Until Round 29 it was keyed by one service
secret: whoever held it and the store could confirm a guessed personal value of an erased
client. A submission with personal values is now keyed by a key derived from its subject's
data key (the one its values are sealed with): the subject's erasure destroys that key, and
the stored hash can no longer be reproduced. Hashes stored the old way (32 bytes) stay
comparable, so idempotency holds as before; a resend after the erasure is refused 409 D-04."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from intake_story import submitted_registrations

from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import (
    SUBJECT_HASH_VERSION,
    IntakeContext,
    refusal_event_id,
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
from branchline_shared.eventstore.memory import InMemoryEventStore

pytestmark = pytest.mark.unit

_KEY = b"k" * 32
_ADMIN = Actor(id="b", role="admin")
_AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


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


def _submit(ctx: IntakeContext, *items: SubmittedEvent) -> list[Outcome]:
    return asyncio.run(submit_events(ctx, list(items), submitted_by=_ADMIN))


def _registration(client: str) -> SubmittedEvent:
    [item] = submitted_registrations(1, _AT)
    return item.model_copy(update={"client_id": client, "event_id": uuid.uuid4()})


def _verified(client: str, event_id: uuid.UUID, ref: str = "NID-4471-0093") -> SubmittedEvent:
    """An identity verification: its ``verification_ref`` is a personal value (sealed)."""
    return _registration(client).model_copy(
        update={
            "type": "client.identity_verified",
            "event_id": event_id,
            "data": {
                "method": "networked_id_check",
                "document_type": "resident_id",
                "verification_ref": ref,
            },
        }
    )


def _registered(ctx: IntakeContext, client: str) -> None:
    [outcome] = _submit(ctx, _registration(client))
    assert isinstance(outcome, Accepted), outcome


def _accepted_new(outcome: Outcome) -> None:
    assert isinstance(outcome, Accepted), outcome
    assert not outcome.duplicate


def _erased(outcome: Outcome) -> None:
    assert isinstance(outcome, Refused), outcome
    assert (outcome.reason, outcome.rule) == (Refusal.CLIENT_ERASED, "D-04")


def _stored_hash(store: InMemoryEventStore, event_id: uuid.UUID) -> bytes:
    digest = store._state.by_id[event_id].submission_hash
    assert digest is not None
    return digest


@pytest.mark.parametrize("recorded", ["accepted", "refused"])
def test_d04_a_personal_submissions_hash_is_keyed_by_its_subject_and_erased_with_it(
    recorded: str,
) -> None:
    """On main the stored hash is ``submission_hash(item, service secret)``: reproducible from
    a guessed clear value after the erasure."""
    ctx, store, keys = _ctx()
    if recorded == "accepted":
        _registered(ctx, "C-1")
    sent = uuid.uuid4()
    item = _verified("C-1", sent)
    [outcome] = _submit(ctx, item)
    if recorded == "accepted":
        _accepted_new(outcome)
        stored = _stored_hash(store, sent)
    else:  # D-09: not registered; the refusal is recorded with the submission's hash
        assert isinstance(outcome, Refused), outcome
        assert outcome.reason is Refusal.RULE_VIOLATION
        stored = _stored_hash(store, refusal_event_id(sent))
    data_key = asyncio.run(keys.key_for("C-1"))
    assert stored[:1] == SUBJECT_HASH_VERSION
    assert len(stored) == 33
    assert stored == subject_submission_hash(item, subject_hash_key(data_key, _KEY))
    asyncio.run(keys.destroy("C-1"))
    # What is left after the erasure (the service secret, the store) does not reproduce it,
    # for the value sent or any other guess.
    for guess in ("NID-4471-0093", "NID-4471-0094"):
        guessed = _verified("C-1", sent, guess)
        assert submission_hash(guessed, _KEY) not in (stored, stored[1:])


def test_d04_a_submission_without_personal_values_keeps_the_service_secrets_hash() -> None:
    ctx, store, _ = _ctx()
    item = _registration("C-1")
    [outcome] = _submit(ctx, item)
    _accepted_new(outcome)
    assert item.event_id is not None
    assert _stored_hash(store, item.event_id) == submission_hash(item, _KEY)


def test_d04_resent_before_the_erasure_is_a_duplicate_after_it_refused() -> None:
    ctx, store, keys = _ctx()
    _registered(ctx, "C-1")
    sent = uuid.uuid4()
    item = _verified("C-1", sent)
    _accepted_new(_submit(ctx, item)[0])
    [again] = _submit(ctx, item)
    assert isinstance(again, Accepted), again
    assert again.duplicate, again
    [changed] = _submit(ctx, _verified("C-1", sent, "NID-4471-0094"))
    assert isinstance(changed, Refused)
    assert changed.reason is Refusal.IDEMPOTENCY_CONFLICT
    asyncio.run(keys.destroy("C-1"))
    for resent in (item, _verified("C-1", sent, "NID-4471-0094")):
        [after] = _submit(ctx, resent)
        _erased(after)  # a clear answer, never a silent accept nor a 5xx
    assert len(asyncio.run(store.read_stream("client-C-1"))) == 2


def test_d04_two_sends_of_one_personal_event_in_one_call_are_one_event() -> None:
    ctx, _, _ = _ctx()
    _registered(ctx, "C-1")
    sent = uuid.uuid4()
    first, second, other = _submit(
        ctx, _verified("C-1", sent), _verified("C-1", sent), _verified("C-1", sent, "X-1")
    )
    _accepted_new(first)
    assert isinstance(second, Accepted), second
    assert second.duplicate, second
    assert isinstance(other, Refused)
    assert other.reason is Refusal.IDEMPOTENCY_CONFLICT


@pytest.mark.parametrize("recorded", ["accepted", "refused"])
def test_d04_a_hash_stored_the_old_way_stays_comparable(recorded: str) -> None:
    """A row stored before Round 29 (the service secret's 32-byte hash of a personal
    submission) is never rewritten: the same submission resent is answered as before (a
    duplicate; a refusal decided again and recorded once), another one 409."""
    ctx, store, _ = _ctx()
    if recorded == "accepted":
        _registered(ctx, "C-1")
    sent = uuid.uuid4()
    item = _verified("C-1", sent)
    _submit(ctx, item)
    row = sent if recorded == "accepted" else refusal_event_id(sent)
    store._state.by_id[row] = dataclasses.replace(
        store._state.by_id[row], submission_hash=submission_hash(item, _KEY)
    )
    [again] = _submit(ctx, item)
    if recorded == "accepted":
        assert isinstance(again, Accepted), again
        assert again.duplicate, again
    else:
        assert isinstance(again, Refused), again
        assert again.reason is Refusal.RULE_VIOLATION, again
        assert len(asyncio.run(store.read_stream("refusals-C-1"))) == 1
    [changed] = _submit(ctx, _verified("C-1", sent, "NID-4471-0094"))
    assert isinstance(changed, Refused)
    assert changed.reason is Refusal.IDEMPOTENCY_CONFLICT


def test_d04_an_erased_clients_new_personal_value_is_answered_as_before() -> None:
    """The client's HTTP answer (``problem_of``) is unchanged by Round 30's wording of a
    member of staff's erasure (#12): 409 ``rule-violation`` "Client erased", D-04, the detail
    naming the client by id."""
    ctx, _, keys = _ctx()
    _registered(ctx, "C-GONE")
    asyncio.run(keys.destroy("C-GONE"))
    [outcome] = _submit(ctx, _verified("C-GONE", uuid.uuid4()))
    _erased(outcome)
    assert isinstance(outcome, Refused)
    assert problem_of(outcome).body() == {
        "type": "https://branchline.dev/problems/rule-violation",
        "title": "Client erased",
        "status": 409,
        "detail": "the data key of client C-GONE was destroyed (D-04)",
        "rule": "D-04",
    }
