"""Accept submitted events: validate, decide by the rules, append with the outbox row.

Everything in one call is one unit of work (one PostgreSQL transaction): a batch of 1,000 is
one round of database work, and concurrent single requests can later share one call (group
commit). Per-item refusals never abort the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter
from pydantic import ValidationError

from branchline_intake.application.deciding import Decider, Violation
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.privacy import register_restrictions
from branchline_intake.domain import RuleViolation, refusal_payload
from branchline_shared.access.scope import StaffDirectory, sees_client
from branchline_shared.access.speaking import speaking_refusal
from branchline_shared.clock import Clock
from branchline_shared.crypto.keystore import ClientKeyStore, KeyDestroyed
from branchline_shared.crypto.sealing import DataKey, seal_paths
from branchline_shared.domain.ids import name_uuid, random_uuids
from branchline_shared.events.bounded import check_instant
from branchline_shared.events.catalogue import (
    CATALOGUE_VERSION,
    PERSONAL_FIELDS,
    SUBJECT_OF,
    SYSTEM_EVENT_TYPES,
    EventPayload,
    EventType,
    UnknownEventType,
    parse_payload,
)
from branchline_shared.events.checked_documents import (
    parse_checked_payload,
    parse_checked_payloads,
)
from branchline_shared.events.envelope import (
    Actor,
    RecordedEvent,
    Subject,
    SubmittedEvent,
    Submitter,
    client_stream_id,
    subject_stream_id,
    utc,
)
from branchline_shared.events.sealing_keys import (
    INSTITUTION_KEY_ID,
    sealed_late_entry,
    sealing_key_id,
    sealing_key_of,
    staff_of_key,
)
from branchline_shared.eventstore.ports import (
    ConcurrencyError,
    EventIdsBusy,
    EventStore,
    LocksDeadlocked,
    StoredEvent,
    StoredPosition,
    StreamsBusy,
    UnitOfWork,
)
from branchline_shared.field_issues import FieldIssue, field_issues
from branchline_shared.postgres.faults import CommitOutcomeUnknown

log = logging.getLogger(__name__)

SOURCE = "intake"
REFUSAL_TYPE = EventType.RULE_VIOLATION_REFUSED.value
_REFUSAL_NAMESPACE = uuid.UUID("6f1c1f0e-6d1b-4b8e-9a43-3c8a1b7f0a11")
_MAX_ATTEMPTS = 3
MAX_LOCK_CYCLES = 3
"""Runs of a group commit's whole transaction the server rolled back to break a lock cycle
(docs/intake.md, "Lock order"); a batch counts them with its lost races (``_MAX_ATTEMPTS``)."""
_PART = 200
"""Candidates decided and written per part of a batch (#12): 1,000 are written in five
statements, each part's while the next part is decided and staged."""
_YIELD_EVERY = 50
"""Candidates decided between two turns of the event loop while a part is being written."""

LOCK_CYCLE_RERUNS = Counter(
    "branchline_intake_lock_cycle_reruns",
    "Transactions run again after the server broke a lock cycle by rolling them back (a writer "
    "of an older release, or two writers of the same event ids: docs/intake.md)",
    ["path"],
)

ID_ORDER_RERUNS = Counter(
    "branchline_intake_event_id_order_reruns",
    "Transactions run again with their events written by one statement, in id order, after a "
    "later write of theirs met another writer's uncommitted event id and did not wait for it "
    "(two writers of the same event ids: docs/intake.md)",
    ["path"],
)

REFUSAL_LOCK_RERUNS = Counter(
    "branchline_intake_refusal_lock_reruns",
    "Transactions run again, refusal streams locked up front, because one could not be locked "
    "at once (a subject's first refusal, or a writer in the old order: docs/intake.md)",
    ["path"],
)


@dataclass(frozen=True)
class IntakeContext:
    store: EventStore
    clock: Clock
    decider: Decider
    topic: str
    keys: ClientKeyStore
    hash_key: bytes
    staff: StaffDirectory = field(default_factory=StaffDirectory)
    """Who supervises whom: a supervisor writes for their team's clients only."""
    refusal_locks_first: bool = False
    """Lock every candidate's refusal stream up front with its subject's, in the one global
    order (the order before #12), instead of only the refusal streams written, after the
    decisions (docs/intake.md, "Lock order"). Set for the one run again after
    :class:`StreamsBusy`."""
    in_group: bool = False
    """The unit of work is a group commit's: on :class:`StreamsBusy` the group runs its whole
    transaction again (a caller alone cannot: the group holds its other locks)."""
    one_write: bool = False
    """A batch's events written by one statement, not in parts: every id inserted in id order
    by it, so no wait of the transaction is out of that order (docs/intake.md, "Event ids are
    not streams"). Set for the one run again after :class:`EventIdsBusy`."""


@dataclass
class _Candidate:
    index: int
    submitted: SubmittedEvent
    event: RecordedEvent
    hash_key: bytes
    submitted_by: Actor
    payload: EventPayload  # as the catalogue validated it: the decider does not parse it again
    subject_key: bytes | None = None
    """The HMAC key of its subject's submissions (:func:`subject_hash_key`), when its subject's
    data key was fetched to seal its personal values: its hash is then keyed by it (Round 29,
    D-04), so that the subject's erasure reaches it."""

    @functools.cached_property
    def submission_hash(self) -> bytes:
        # When first needed (staged, answered as a duplicate, or compared with a recorded
        # refusal's), not before the locks: a batch's part is hashed while the part before is
        # written (#12); a refusal by a rule is hashed too since Round 28 (recorded with it).
        if self.subject_key is not None:
            return subject_submission_hash(self.submitted, self.subject_key)
        return submission_hash(self.submitted, self.hash_key)

    def same_submission(self, stored: bytes) -> bool:
        """``stored`` (an accepted event's or a recorded refusal's hash) is this submission's.
        A hash of the service secret's alone (32 bytes: every hash stored before Round 29, and
        a submission's without personal values since) is compared with this submission's
        hashed that way, so a resend of an event stored before Round 29 stays a duplicate; a
        subject-keyed one (version byte first) with this one's (Round 29, D-04)."""
        if len(stored) == SERVICE_HASH_BYTES and self.subject_key is not None:
            return stored == submission_hash(self.submitted, self.hash_key)
        return stored == self.submission_hash


_SUBMISSION_SERIALIZER = SubmittedEvent.__pydantic_serializer__
_NOT_HASHED = {"event_id", "expected_version"}


SERVICE_HASH_BYTES = 32
"""The length of a submission hash keyed by the service secret alone (HMAC-SHA256)."""
SUBJECT_HASH_VERSION = b"\x01"
"""The first byte of a subject-keyed submission hash (33 bytes: :func:`subject_submission_hash`).
The stored hash says how it was made by its length: no stored row is ever rewritten."""
_SUBJECT_HASH_LABEL = b"branchline/submission-hash/subject/1\0"


def _hashed_content(submitted: SubmittedEvent) -> bytes:
    content = _SUBMISSION_SERIALIZER.to_python(submitted, mode="json", exclude=_NOT_HASHED)
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def submission_hash(submitted: SubmittedEvent, key: bytes) -> bytes:
    """What makes two submissions "the same event": everything but the idempotency key and
    the concurrency expectation. Keyed (HMAC-SHA256), because the submission holds personal
    values in clear and a plain hash of a phone number can be reversed by trying them all.
    Keyed by the service secret: a submission without personal values (and every hash
    stored before Round 29); one with them is keyed by its subject
    (:func:`subject_submission_hash`)."""
    # pydantic-core's serializer and the HMAC from the key's padded states (#12): the same dump
    # and the same digest as ``model_dump(...)`` and ``hmac.new(...).digest()``, without their
    # Python wrappers (an HMAC object per event) nor the key's set-up per event;
    # tests/unit/intake/test_submission_hash.py.
    return hmac_sha256(key, _hashed_content(submitted))


def subject_hash_key(data_key: DataKey, service_key: bytes) -> bytes:
    """The HMAC key of a subject's submission hashes (Round 29, D-04): derived from the
    subject's data key (the one its personal values are sealed with) and the service secret.
    Destroying the data key (the subject's erasure, crypto-shredding) destroys it too: no
    stored hash of theirs can then be reproduced from a guessed clear value, even with the
    service secret and the master key (docs/privacy.md, "Submission hashes")."""
    return hmac.digest(data_key.secret, _SUBJECT_HASH_LABEL + service_key, "sha256")


def subject_submission_hash(submitted: SubmittedEvent, subject_key: bytes) -> bytes:
    """:func:`submission_hash` keyed by the subject's :func:`subject_hash_key`, with
    :data:`SUBJECT_HASH_VERSION` first (Round 29, D-04). One-shot HMAC: the key differs per
    subject, and no subject's key is kept beyond the call that derived it."""
    return SUBJECT_HASH_VERSION + hmac.digest(subject_key, _hashed_content(submitted), "sha256")


_SHA256_BLOCK = 64
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))


@functools.lru_cache(maxsize=16)
def _hmac_sha256_pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after the key's inner and outer pads (RFC 2104), made once per key."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_INNER_PAD)), hashlib.sha256(key.translate(_OUTER_PAD))


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """``hmac.digest(key, message, "sha256")`` from the key's padded states, copied (#12: the
    one-shot call sets the key up again for every event, about a third of its time);
    tests/unit/intake/test_submission_hash.py holds it to ``hmac``."""
    inner, outer = _hmac_sha256_pads(key)
    inner = inner.copy()
    inner.update(message)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


def refusal_stream_id(event: RecordedEvent | SubmittedEvent) -> str:
    """Where the refusals of a subject's events are recorded: a client's keep the name they
    always had; a product's or a member of staff's are ``refusals/<its stream>`` (``/`` is
    not allowed in an id, so no client's or product's own stream can take that name)."""
    if event.subject is Subject.CLIENT:
        return f"refusals-{event.subject_id}"
    return f"refusals/{subject_stream_id(event.subject, event.subject_id)}"


def refusal_event_id(refused_event_id: uuid.UUID) -> uuid.UUID:
    """Deterministic, so the same refused event sent again is recorded as refused once."""
    return name_uuid(_REFUSAL_NAMESPACE, str(refused_event_id))


async def submit_events(
    ctx: IntakeContext,
    items: Sequence[SubmittedEvent],
    *,
    submitted_by: Actor,
    submitter: Submitter | None = None,
    checked: bool = False,
) -> list[Outcome]:
    """Validate, decide and record ``items`` (sent by the authenticated ``submitted_by``,
    recorded on every accepted event as ``submitter``); one outcome per item, in order.
    ``checked``: every item is from a document the strict input check passed, so its payload
    is validated without the checks that check made (``parse_checked_payload``, #12)."""
    caller = {"submitted_by": submitted_by, "submitter": submitter, "checked": checked}
    (outcomes,) = await submit_callers(ctx, [(items, caller)])
    return outcomes


async def submit_callers(
    ctx: IntakeContext, callers: Sequence[tuple[Sequence[SubmittedEvent], Mapping[str, Any]]]
) -> list[list[Outcome]]:
    """:func:`submit_events` for several callers at once (each ``(items, keyword arguments of
    submit_events)``), their candidates decided and recorded by one unit of work, in the
    callers' order; each caller's outcomes, in its items' order. Each candidate carries its
    own caller (``submitted_by``, and its envelope's ``submitter``): who speaks is each
    caller's token, checked per caller as for one. For a group commit's guessed group of
    several branch systems, whose callers' streams are disjoint (#12: one unit of work and
    one pass of deciding instead of one ``submit_events`` task per caller, the per-call work
    that made 16 tokens cost more per event than one)."""
    total = sum(len(items) for items, _ in callers)
    outcomes: list[Outcome | None] = [None] * total
    candidates: list[_Candidate] = []
    now = utc(check_instant(ctx.clock.now()))
    keys: dict[str, DataKey] = {}
    subject_keys: dict[str, bytes] = {}  # by data key id: subject_hash_key, this call's only
    # The ids of the items sent without one, drawn at once for every caller (#12): a UUIDv4
    # each, as before.
    new_ids = iter(
        random_uuids(sum(1 for items, _ in callers for item in items if item.event_id is None))
    )
    offset = 0
    for items, caller in callers:
        candidates += await _candidates(
            ctx, items, offset, outcomes, now, keys, subject_keys, new_ids, **caller
        )
        offset += len(items)
    if candidates:
        attempt = 1
        while True:
            try:
                decided = await _record(ctx, candidates, keys)
                break
            except CommitOutcomeUnknown as unknown:
                # The transaction may have stored them (its write or COMMIT lost, the store
                # not askable): its answer names each one's id, so that a caller that sent an
                # event without one can send it again with it, stored once (docs/api.md).
                for cand in candidates:
                    unknown.name(cand.submitted, cand.event.event_id)
                raise
            except LocksDeadlocked:
                # The server broke a lock cycle by rolling this transaction back, nothing
                # answered (docs/intake.md, "Lock order"): run it again, reading again what
                # the other writer stored meanwhile (an attempt, as a lost race is: no counter
                # of its own on the way of every write). In a group the group's whole
                # transaction runs again instead: the cycle may go through its other callers'
                # rows.
                if ctx.in_group or attempt == _MAX_ATTEMPTS:
                    raise
                attempt += 1
                LOCK_CYCLE_RERUNS.labels(path="batch").inc()
                log.warning("a lock cycle was broken; the batch runs again")
                continue
            except EventIdsBusy:
                # A part after the first met another writer's uncommitted event id, below one
                # an earlier part wrote, and did not wait (docs/intake.md, "Event ids are not
                # streams"): everything was rolled back, nothing answered. Run again with all
                # the events written by one statement, in id order, which may wait: that run
                # never raises it, so this happens once. In a group, the group runs again.
                if ctx.in_group or ctx.one_write:
                    raise
                ID_ORDER_RERUNS.labels(path="batch").inc()
                ctx = dataclasses.replace(ctx, one_write=True)
                continue
            except StreamsBusy:
                # A refusal stream could not be locked at once (docs/intake.md, "Lock order"):
                # everything was rolled back; run again with the refusal streams locked up
                # front, in the one global order. That run never raises it, so this happens
                # once. In a group, the group's whole transaction is run again instead.
                if ctx.in_group or ctx.refusal_locks_first:
                    raise
                REFUSAL_LOCK_RERUNS.labels(path="batch").inc()
                ctx = dataclasses.replace(ctx, refusal_locks_first=True)
                continue
            except ConcurrencyError:
                # A concurrent writer took the same event id (on another stream), or stored it
                # while this batch's COMMIT was lost (IdsTakenAfterLostCommit: nothing of the
                # batch stored, Round 25): read again, and the retry answers it as the
                # duplicate it is (or idempotency-conflict, another body under the id).
                if attempt == _MAX_ATTEMPTS:
                    raise
                attempt += 1
        for index, outcome in decided.items():
            outcomes[index] = outcome
        await register_restrictions(
            ctx.keys, [c.event for c in candidates], [decided[c.index] for c in candidates]
        )
    split: list[list[Outcome]] = []
    offset = 0
    for items, _ in callers:
        split.append([o for o in outcomes[offset : offset + len(items)] if o is not None])
        offset += len(items)
    return split


async def _candidates(
    ctx: IntakeContext,
    items: Sequence[SubmittedEvent],
    offset: int,
    outcomes: list[Outcome | None],
    now: datetime,
    keys: dict[str, DataKey],
    subject_keys: dict[str, bytes],
    new_ids: Iterator[uuid.UUID],
    *,
    submitted_by: Actor,
    submitter: Submitter | None = None,
    checked: bool = False,
) -> list[_Candidate]:
    """One caller's items validated, checked against its token (speaking rules, scope) and
    made envelopes: the items refused here answered in ``outcomes`` (at ``offset`` + their
    index), the rest returned as candidates to decide."""
    candidates: list[_Candidate] = []
    parsed = _checked_payloads(items) if checked else {}
    for local, item in enumerate(items):
        index = offset + local
        valid: EventPayload | Refused | None = parsed.get(local)
        if valid is None:
            valid = _validate_payload(item, parse_checked_payload if checked else parse_payload)
        if not isinstance(valid, Refused) and item.type in SYSTEM_EVENT_TYPES:
            valid = Refused(
                Refusal.SYSTEM_EVENT_TYPE,
                f"{item.type!r} is emitted by Branchline itself",
                issues=(FieldIssue("type", "emitted by Branchline itself", "forbidden"),),
            )
        if not isinstance(valid, Refused) and submitter is not None:
            valid = _speaking_checked(submitter, item) or valid
        if isinstance(valid, Refused):
            outcomes[index] = valid
            continue
        data = _payload_data(valid)
        try:
            key_id = await _fetch_key(ctx, item, data, keys)
        except KeyDestroyed as erased:
            # Also a resend of an event stored before the erasure: its hash can no longer be
            # made (Round 29), and it is answered so, not as a duplicate (D-04).
            outcomes[index] = _erased(erased)
            continue
        subject_key = None
        if key_id is not None:
            subject_key = subject_keys.get(key_id)
            if subject_key is None:
                subject_key = subject_keys[key_id] = subject_hash_key(keys[key_id], ctx.hash_key)
        candidates.append(
            _Candidate(
                index,
                item,
                _envelope(item, data, now, submitter, item.event_id or next(new_ids)),
                ctx.hash_key,
                submitted_by,
                valid,
                subject_key,
            )
        )
    for index, outside in (await _outside_scope(ctx, submitter, candidates)).items():
        outcomes[index] = outside
    return [c for c in candidates if outcomes[c.index] is None]


def _checked_payloads(items: Sequence[SubmittedEvent]) -> dict[int, EventPayload]:
    """The payloads of items of a checked document (``parse_checked_payload``) validated in one
    call per event type (#12), by item index, for the items whose payload is what decides
    next: their subject is the one their type names (``_validate_payload`` checks that
    first). A type none of whose payloads is refused has them all here; any other item is
    validated alone by ``_validate_payload``, which names its errors."""
    by_type: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        expected = SUBJECT_OF.get(item.type)
        if expected is None or item.subject is expected:
            by_type.setdefault(item.type, []).append(index)
    parsed: dict[int, EventPayload] = {}
    for event_type, indexes in by_type.items():
        payloads = parse_checked_payloads(event_type, [items[i].data for i in indexes])
        if payloads is not None:
            parsed.update(zip(indexes, payloads, strict=True))
    return parsed


def _payload_data(payload: EventPayload) -> dict[str, Any]:
    """``payload.model_dump(mode="json", exclude_none=True)``: the same call of the model's
    serializer without ``model_dump``'s Python wrapper (#12: about a third of the dump's
    time, once per batch item); tests/unit/intake/test_batch_items.py holds it to that."""
    data: dict[str, Any] = payload.__pydantic_serializer__.to_python(
        payload, mode="json", exclude_none=True
    )
    return data


def _speaking_checked(submitter: Submitter, item: SubmittedEvent) -> Refused | None:
    refused = speaking_refusal(
        submitter, actor=item.actor, client_id=item.client_id, branch_id=item.branch_id
    )
    if refused is None:
        return None
    return Refused(
        Refusal.ACTOR_NOT_ALLOWED,
        refused.detail,
        issues=(FieldIssue(refused.field, refused.detail, "forbidden"),),
    )


async def _outside_scope(
    ctx: IntakeContext, submitter: Submitter | None, candidates: list[_Candidate]
) -> dict[int, Refused]:
    """An RM writes only for their own clients, a supervisor for their team's (a branch system
    is bound to its branch by the speaking rules, an admin is not scoped). Out of scope is
    answered as "no such client" (404), so another RM's client's existence does not leak.
    A client's RM is the one its registration names: the first event of its stream, which
    never changes once written (or a registration earlier in this same call)."""
    if submitter is None or {"admin", "branch_system"} & set(submitter.roles):
        return {}
    owners: dict[str, str | None] = {}
    refused: dict[int, Refused] = {}
    for cand in candidates:
        client = cand.event.client_id
        if client is None:
            continue  # product and staff events: their types are the governance roles' alone
        if client not in owners:
            first = await ctx.store.read_stream(client_stream_id(client), from_version=1, limit=1)
            owners[client] = client_rm([s.event for s in first])
        if owners[client] is None and cand.event.type == EventType.CLIENT_REGISTERED:
            owners[client] = _registering_rm(cand.event)
        if not sees_client(submitter, ctx.staff, rm_id=owners[client]):
            refused[cand.index] = Refused(
                Refusal.CLIENT_NOT_FOUND, f"no client {client!r} of yours"
            )
    return refused


def client_rm(history: Sequence[RecordedEvent]) -> str | None:
    """The client's RM as its history states it (``client.registered``)."""
    for event in history:
        if event.type == EventType.CLIENT_REGISTERED:
            rm = event.data.get("rm_id")
            return rm if isinstance(rm, str) else None
    return None


def _registering_rm(event: RecordedEvent) -> str | None:
    rm = event.data.get("rm_id") if event.type == EventType.CLIENT_REGISTERED else None
    return rm if isinstance(rm, str) else None


def _validate_payload(
    item: SubmittedEvent, parse: Callable[[str, dict[str, Any]], EventPayload]
) -> Refused | EventPayload:
    expected = SUBJECT_OF.get(item.type)
    if expected is not None and item.subject is not expected:
        return Refused(
            Refusal.WRONG_SUBJECT,
            f"{item.type!r} is about a {expected.value}: name it in {expected.field}",
            issues=(
                FieldIssue(
                    expected.field, f"{item.type} names its subject in {expected.field}", "missing"
                ),
            ),
        )
    try:
        return parse(item.type, item.data)
    except UnknownEventType:
        return Refused(
            Refusal.UNKNOWN_EVENT_TYPE,
            f"{item.type!r} is not in the catalogue",
            issues=(FieldIssue("type", "unknown event type", "unknown"),),
        )
    except ValidationError as exc:
        issues = field_issues([{**e, "loc": ("data", *e["loc"])} for e in exc.errors()])
        return Refused(
            Refusal.INVALID,
            "invalid fields: " + ", ".join(i.field for i in issues),
            issues=tuple(issues),
        )


def _personal_paths(event_type: str, data: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        p for p in PERSONAL_FIELDS.get(event_type, ()) if data.get(p.split(".", 1)[0]) is not None
    )


def _erased(erased: KeyDestroyed) -> Refused:
    """The refusal of a personal value of a subject whose key is destroyed (D-04), naming
    whose it was by id (a client's, or a member of staff's ``#staff/<staff_id>``)."""
    if erased.client_id == INSTITUTION_KEY_ID:
        # No client's and no erasure's (no command destroys it): titled for what it is.
        return Refused(
            Refusal.INSTITUTION_KEY_DESTROYED,
            "the institution's data key (the product shelf's texts) was destroyed",
            rule="D-04",
        )
    staff_id = staff_of_key(erased.client_id)
    if staff_id is None:
        return Refused(Refusal.CLIENT_ERASED, str(erased), rule="D-04")
    return Refused(
        Refusal.STAFF_ERASED,
        f"the data key of member of staff {staff_id} was destroyed (D-04)",
        rule="D-04",
    )


async def _fetch_key(
    ctx: IntakeContext,
    item: SubmittedEvent,
    data: dict[str, Any],
    keys: dict[str, DataKey],
) -> str | None:
    """The data key of the event's subject (the client's, a member of staff's or the
    institution's: ``sealing_keys``), fetched before the unit of work when the event will need
    it (raises KeyDestroyed for an erased client or member of staff); its id, or None when it
    is not needed (nothing personal to seal: the submission's hash is then the service
    secret's)."""
    key_id = sealing_key_id(item.type, client_id=item.client_id, staff_id=item.staff_id)
    needed = _personal_paths(item.type, data) or item.late_entry is not None
    if key_id is None or not needed:
        return None
    if key_id not in keys:
        keys[key_id] = await ctx.keys.key_for(key_id)
    return key_id


def _sealed(event: RecordedEvent, keys: dict[str, DataKey]) -> RecordedEvent:
    """The accepted event with its personal values sealed, as it is stored and published
    (ADR-0007): the rules decided on the clear, typed payload, so every limit means what it
    says for the clear text (issue #9 finding 4); the event store, the topics and the audit
    trail only ever hold ciphertext. The envelope's late-entry reason is free text too: sealed
    with the same key (issue #9)."""
    paths = _personal_paths(event.type, event.data)
    if not paths and event.late_entry is None:
        return event
    key_id = sealing_key_of(event)
    if key_id is None:  # every subject kind has a key; an event without its subject has none
        raise ValueError(f"{event.type} has personal fields but no subject to seal them for")
    key = keys[key_id]
    update: dict[str, Any] = {}
    if paths:
        update["data"] = seal_paths(event.data, paths, key, client_id=key_id)
    if event.late_entry is not None:
        update["late_entry"] = sealed_late_entry(event.late_entry, key, key_id)
    return event.model_copy(update=update)


_ENVELOPE_FIELDS_SET = frozenset(RecordedEvent.model_fields) - {"synthetic"}


def _envelope(
    item: SubmittedEvent,
    data: dict[str, Any],
    now: datetime,
    submitter: Submitter | None,
    event_id: uuid.UUID,
) -> RecordedEvent:
    """The envelope of a validated submission, built without validating it again (#12: that
    was a tenth of a batch's CPU, most of it checking again what was just checked). Every
    field comes from the validated ``SubmittedEvent``, whose checks include those of
    ``RecordedEvent`` field by field (its ids, type, token and late-entry checks are at least
    as strict; nested models are taken as they are by validation too), from the payload the
    catalogue validated (``data``), or is set here (``event_id``: the item's own, or the new
    random one drawn for it); what ``RecordedEvent``'s validation adds,
    its times in UTC, is done here (``now``, checked once per call, is already in UTC). It is
    the object ``RecordedEvent(...)`` would make, as ``pydantic``'s ``model_construct`` makes
    it; ``tests/unit/intake/test_envelope_built.py`` holds it to that."""
    envelope = RecordedEvent.__new__(RecordedEvent)
    object.__setattr__(
        envelope,
        "__dict__",
        {
            "event_id": event_id,
            "type": item.type,
            "schema_version": CATALOGUE_VERSION[item.type],
            "occurred_at": utc(item.occurred_at),
            "recorded_at": now,
            "source": SOURCE,
            "actor": item.actor,
            "client_id": item.client_id,
            "product_id": item.product_id,
            "staff_id": item.staff_id,
            "branch_id": item.branch_id,
            "channel": item.channel,
            "stream_id": subject_stream_id(item.subject, item.subject_id),
            "stream_version": 0,  # assigned under the stream lock
            "correlation_id": item.correlation_id,
            "causation_id": item.causation_id,
            "late_entry": item.late_entry,
            "data": data,
            "submitted_by": submitter,
            "synthetic": False,
        },
    )
    object.__setattr__(envelope, "__pydantic_fields_set__", set(_ENVELOPE_FIELDS_SET))
    object.__setattr__(envelope, "__pydantic_extra__", None)
    object.__setattr__(envelope, "__pydantic_private__", None)
    return envelope


def at_version(event: RecordedEvent, version: int) -> RecordedEvent:
    """``event.model_copy(update={"stream_version": version})``, made directly (#12): every
    accepted event is copied once to take its version, and pydantic's general copy (a
    ``copy.copy`` per attribute, the update applied field by field) was about 5 % of a
    batch's busy samples. The same object: the fields as they are (shallow), the version
    not validated (as ``model_copy`` does not), the fields set with ``stream_version``."""
    cls = type(event)
    copied = cls.__new__(cls)
    object.__setattr__(copied, "__dict__", {**event.__dict__, "stream_version": version})
    object.__setattr__(
        copied, "__pydantic_fields_set__", event.__pydantic_fields_set__ | {"stream_version"}
    )
    extra, private = event.__pydantic_extra__, event.__pydantic_private__
    object.__setattr__(copied, "__pydantic_extra__", None if extra is None else dict(extra))
    object.__setattr__(copied, "__pydantic_private__", None if private is None else dict(private))
    return copied


async def _record(
    ctx: IntakeContext, candidates: list[_Candidate], keys: dict[str, DataKey]
) -> dict[int, Outcome]:
    async with ctx.store.unit_of_work() as uow:
        client_streams = sorted({c.event.stream_id for c in candidates})
        # A refusal stream is locked only when a refusal is written to it, after the decisions
        # (#12: most batches refuse nothing, and locking (and creating) a refusal stream per
        # subject was half of the stream rows and locks); docs/intake.md, "Lock order", says
        # why that cannot deadlock. Run again after StreamsBusy, all are locked up front.
        refusal_streams = (
            sorted({refusal_stream_id(c.event) for c in candidates})
            if ctx.refusal_locks_first
            else []
        )
        # The product shelf and staff records a candidate's rules read (D-13, D-14, D-16)
        # are read-locked with the written streams (one lock order: no deadlock), so a
        # decision and a concurrent suspension or revocation are ordered.
        referenced = sorted(
            {s for c in candidates for s in ctx.decider.references(c.event)} - set(client_streams)
        )
        # The version each subject's stream reaches if all its items are accepted: a new
        # stream is created at it, so the write does not update it again (#12); a hint only,
        # the store corrects a stream left elsewhere (a refusal, a duplicate) before commit.
        likely = collections.Counter(c.event.stream_id for c in candidates)
        versions = await uow.lock_streams(
            client_streams + refusal_streams, shared=referenced, likely=likely
        )
        # Only the ids the callers sent can be stored already: an item sent without one got a
        # new random id (UUIDv4) here, which nothing can hold, nor its refusal's id derived
        # from it. Looking those up cost a UUIDv5 each and, in a group commit, a statement
        # per caller (#12).
        sent = [c.event.event_id for c in candidates if c.submitted.event_id is not None]
        refusal_ids = {i: refusal_event_id(i) for i in sent}
        existing = await uow.find_existing(sent + list(refusal_ids.values()))
        # A guessing unit takes every id for not stored; a refused event's recorded refusal
        # may be, with the hash of the submission sent again under its id (Round 28): the
        # same submission is decided again, as here; its write checks it.
        may_be_stored_as = getattr(uow, "may_be_stored_as", None)
        # A refusal of a sent id and another event accepted under it are recorded under two
        # ids, which no unique index orders: each is claimed, and the store looks again for
        # the other after the claims' locks, before the commit (#12, D-05; docs/intake.md).
        claim_ids = getattr(uow, "claim_ids", None)
        histories = await uow.load_streams(client_streams + referenced)
        decided: dict[int, Outcome] = {}
        first_in_batch: dict[uuid.UUID, _Candidate] = {}
        staged: list[tuple[int, RecordedEvent]] = []
        # A group's callers are written as before, in one write; a batch larger than a part
        # in parts, each part's write in flight while the next part is decided (#12), or in
        # one write after a part met another writer's id out of the id order.
        size = len(candidates) if ctx.in_group or ctx.one_write else _PART
        writer = _PartWriter(uow)
        try:
            for start in range(0, len(candidates), size):
                part = candidates[start : start + size]
                writes = await _decide_part(
                    ctx, part, versions, histories, existing, keys, decided, first_in_batch, writer
                )
                refusals = {
                    refusal_stream_id(cand.event)
                    for cand, written in writes
                    if not isinstance(written, RecordedEvent)
                }
                if unlocked := sorted(refusals - versions.keys()):
                    # Out of the global order, hence without waiting: StreamsBusy if one is
                    # held. The connection runs one statement at a time: the write first.
                    await writer.settle()
                    versions.update(await uow.try_lock_streams(unlocked))
                for cand, written in writes:  # staged in decision order, as before
                    if isinstance(written, RecordedEvent):
                        uow.stage(written, topic=ctx.topic, submission_hash=cand.submission_hash)
                        staged.append((cand.index, written))
                    else:
                        _stage_refusal(ctx, uow, cand, written, versions)
                if claim_ids is not None and refusal_ids:
                    claim_ids(_claims(writes, refusal_ids, existing))
                if may_be_stored_as is not None:
                    may_be_stored_as(
                        {
                            refusal_ids[cand.event.event_id]: cand.submission_hash
                            for cand, written in writes
                            if isinstance(written, RecordedEvent)
                            and cand.event.event_id in refusal_ids
                        }
                    )
                await writer.send(last=start + size >= len(candidates))
            positions = await writer.finish()
        finally:
            await writer.abandon()
    by_event = {p.event_id: p for p in positions}
    for index, event in staged:
        decided[index] = Accepted(by_event[event.event_id])
    for cand in candidates:
        if cand.index not in decided:
            first = first_in_batch[cand.event.event_id]
            first_outcome = decided[first.index]
            if isinstance(first_outcome, Accepted):
                decided[cand.index] = _answer_duplicate(
                    first_outcome.position, first.submission_hash, cand
                )
            elif (
                isinstance(first_outcome, Refused)
                and first_outcome.reason is Refusal.RULE_VIOLATION
                and not cand.same_submission(first.submission_hash)
            ):
                # The first one's refusal is recorded with its submission's hash: another
                # submission under its id is a reused id, as it is when sent later (Round 28).
                decided[cand.index] = _reused(cand.event.event_id)
            else:
                decided[cand.index] = first_outcome
    return decided


def _claims(
    writes: list[tuple[_Candidate, RecordedEvent | Violation]],
    refusal_ids: Mapping[uuid.UUID, uuid.UUID],
    existing: Mapping[uuid.UUID, StoredEvent],
) -> list[tuple[uuid.UUID, uuid.UUID, bool]]:
    """The claims of a part's writes under sent ids (#12, D-05): ``(id sent, id that must not
    be stored, exclusive)``. An event accepted under X claims X shared, its refusal's id to be
    absent (unless that refusal was stored before: the same submission refused earlier, now
    accepted); a refusal of X recorded claims X exclusive, X to be absent."""
    claims: list[tuple[uuid.UUID, uuid.UUID, bool]] = []
    for cand, written in writes:
        event_id = cand.event.event_id
        refusal_id = refusal_ids.get(event_id)
        if refusal_id is None:  # a new random id: no other writer can send it
            continue
        if not isinstance(written, RecordedEvent):
            claims.append((event_id, event_id, True))
        elif refusal_id not in existing:
            claims.append((event_id, refusal_id, False))
    return claims


class _PartWriter:
    """Writes a unit of work's staged events part by part, one write in flight at a time (a
    connection runs one statement at a time), while the caller decides and stages the next
    part (#12). Every part is written in the unit's one transaction, in staging order, so the
    positions, the outbox order and all-or-nothing are those of one write."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._writing: asyncio.Task[list[StoredPosition]] | None = None
        self._positions: list[StoredPosition] = []

    @property
    def busy(self) -> bool:
        return self._writing is not None

    async def settle(self) -> None:
        """Wait for the write in flight, if any (its error is raised here)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            self._positions.extend(await writing)

    async def send(self, *, last: bool) -> None:
        """Write what is staged. The last part's write is awaited (nothing is left to decide
        meanwhile); an earlier one is not: one turn of the loop lets it go out before the
        caller's next part of Python."""
        await self.settle()
        if last:
            self._positions.extend(await self._uow.commit())
            return
        self._writing = asyncio.ensure_future(self._uow.commit())
        await asyncio.sleep(0)

    async def finish(self) -> list[StoredPosition]:
        await self.settle()
        return self._positions

    async def abandon(self) -> None:
        """On the way out with an error: no statement may be left running on the connection
        when the transaction is rolled back; the first error is the one raised."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await asyncio.wait([writing])
            with contextlib.suppress(BaseException):
                writing.result()


async def _decide_part(
    ctx: IntakeContext,
    part: list[_Candidate],
    versions: dict[str, int],
    histories: dict[str, list[RecordedEvent]],
    existing: dict[uuid.UUID, StoredEvent],
    keys: dict[str, DataKey],
    decided: dict[int, Outcome],
    first_in_batch: dict[uuid.UUID, _Candidate],
    writer: _PartWriter,
) -> list[tuple[_Candidate, RecordedEvent | Violation]]:
    """Decide ``part`` in order: answers into ``decided``, what to write returned in decision
    order. An id seen earlier in the call is answered after the write, as a duplicate."""
    writes: list[tuple[_Candidate, RecordedEvent | Violation]] = []
    for count, cand in enumerate(part, 1):
        event_id = cand.event.event_id
        earlier = existing.get(event_id)
        if earlier is not None:
            decided[cand.index] = _answer_duplicate(earlier.position, earlier.submission_hash, cand)
        elif existing and _refused_otherwise(existing, cand):
            # The id's event was refused by a rule and recorded, another submission under it
            # now (Round 28): answered as a reused id is, not decided as new.
            decided[cand.index] = _reused(event_id)
        elif event_id not in first_in_batch:
            first_in_batch[event_id] = cand
            outcome = _decide_one(ctx, cand, versions, histories, writes, existing, keys)
            if outcome is not None:
                decided[cand.index] = outcome
        if writer.busy and count % _YIELD_EVERY == 0:
            # The write in flight is sent as the socket takes it, between these turns.
            await asyncio.sleep(0)
    return writes


def _answer_duplicate(position: StoredPosition, stored: bytes | None, cand: _Candidate) -> Outcome:
    if stored is not None and not cand.same_submission(stored):
        return _reused(position.event_id)
    return Accepted(position, duplicate=True)


def _reused(event_id: uuid.UUID) -> Refused:
    """An event id already used for another submission: 409 ``idempotency-conflict``."""
    return Refused(
        Refusal.IDEMPOTENCY_CONFLICT,
        f"event_id {event_id} was already used for a different event",
        issues=(FieldIssue("event_id", "already used for another event", "conflict"),),
    )


def _refused_otherwise(existing: Mapping[uuid.UUID, StoredEvent], cand: _Candidate) -> bool:
    """The candidate's id is that of an event refused by a rule whose refusal is recorded,
    and this is another submission (Round 28: by the refused submission's hash).

    A refusal recorded before Round 28 has no hash (Round 29, #12): it is compared by what
    it kept, the refused event with its personal values redacted (D-04) and its sender. One
    that differs there was another submission: 409, as with a hash. One that agrees is
    decided again, as before (the personal values, which the refusal does not keep, are the
    only part that can differ: not told apart, docs/intake.md)."""
    if cand.submitted.event_id is None:  # a new random id: nothing was refused under it
        return False
    refusal = existing.get(refusal_event_id(cand.event.event_id))
    if refusal is None:
        return False
    if refusal.submission_hash is not None:
        return not cand.same_submission(refusal.submission_hash)
    return not _kept_alike(refusal, cand)


def _kept_alike(refusal: StoredEvent, cand: _Candidate) -> bool:
    """A hash-less refusal's kept submission (redacted, D-04) and sender are the candidate's,
    as a refusal of it would keep them now (Round 29, #12)."""
    data = refusal.event.data
    if not isinstance(data, Mapping) or not all(k in data for k in ("rule", "title", "detail")):
        return False  # not a refusal's payload as recorded: nothing shows it alike
    kept = refusal_payload(  # the recorded violation's own words: valid as they were
        RuleViolation(data["rule"], data["title"], data["detail"], data.get("field")),
        cand.submitted,
        submitted_by=cand.submitted_by,
        event_id=cand.event.event_id,
    ).model_dump(mode="json", exclude_none=True, include={"refused_event", "submitted_by"})
    return all(data.get(name) == value for name, value in kept.items())


def _decide_one(
    ctx: IntakeContext,
    cand: _Candidate,
    versions: dict[str, int],
    histories: dict[str, list[RecordedEvent]],
    writes: list[tuple[_Candidate, RecordedEvent | Violation]],
    existing: dict[uuid.UUID, StoredEvent],
    keys: dict[str, DataKey],
) -> Outcome | None:
    """Decide one candidate: its answer if refused (its refusal, to be recorded, goes to
    ``writes``), or None once its accepted event is in ``writes`` and in its history."""
    stream_id = cand.event.stream_id
    current = versions.get(stream_id, 0)
    expected = cand.submitted.expected_version
    if expected is not None and expected != current:
        return Refused(
            Refusal.VERSION_CONFLICT,
            f"expected version {expected} of {stream_id}, but it is at {current}",
            issues=(FieldIssue("expected_version", f"stream is at {current}", "conflict"),),
            current_version=current,
        )
    decision = ctx.decider(histories[stream_id], cand.event, histories, payload=cand.payload)
    if not isinstance(decision, RecordedEvent):
        if refusal_event_id(cand.event.event_id) not in existing:  # a retry is refused once
            writes.append((cand, decision))
        return Refused(
            Refusal.RULE_VIOLATION,
            decision.detail,
            rule=decision.rule,
            rule_title=decision.title,
            issues=(FieldIssue(decision.field, decision.detail, "rule"),)
            if decision.field
            else None,
            event_id=cand.event.event_id,
        )
    event = _sealed(at_version(decision, current + 1), keys)
    versions[stream_id] = current + 1
    histories[stream_id].append(event)
    if (remember := getattr(ctx.decider, "remember_decided", None)) is not None:
        remember(histories[stream_id])  # the state after it: a next write stands on it (#12)
    writes.append((cand, event))
    return None


def _stage_refusal(
    ctx: IntakeContext,
    uow: UnitOfWork,
    cand: _Candidate,
    violation: Violation,
    versions: dict[str, int],
) -> None:
    """The refusal itself is a fact auditors must see (docs/rules.md D-05: "the refusal is itself
    recorded"): stored on the client's refusal stream and published like any event."""
    stream_id = refusal_stream_id(cand.event)
    version = versions.get(stream_id, 0) + 1
    versions[stream_id] = version
    refused = cand.event
    payload = refusal_payload(
        RuleViolation(violation.rule, violation.title, violation.detail, violation.field),
        cand.submitted,
        submitted_by=cand.submitted_by,
        event_id=refused.event_id,
    )  # personal values are redacted: a refusal for want of consent keeps none (D-04)
    refusal = refused.model_copy(
        update={
            "event_id": refusal_event_id(refused.event_id),
            "type": REFUSAL_TYPE,
            "stream_id": stream_id,
            "stream_version": version,
            "causation_id": str(refused.event_id),
            "data": payload.model_dump(mode="json", exclude_none=True),
        }
    )
    # The refused submission's hash, as an accepted event has its own (Round 28): a later
    # submission under the refused event's id is then told "the same again" (decided again)
    # from "another event" (409 idempotency-conflict), by ``_refused_otherwise``.
    uow.stage(refusal, topic=ctx.topic, submission_hash=cand.submission_hash)
