"""Which process of a partitioned rebuild applies which event (#12, ``--processes N``).

A rebuild in N processes (:mod:`~branchline_followup.adapters.partitioned_rebuild`) gives each
process the clients whose id hashes to it (:func:`partition_of`), all into the same rebuild
schema; every event type is classified here, once (a test fails on a type of the catalogue
not classified):

- :data:`BY_CLIENT`: an event about a client (its envelope's ``client_id``). Everything it
  reads and writes is that client's (facts, open tasks, timers, journal and re-projection,
  timeline, console rows, holdings, refusals, personal values, recorded creations read from
  followup's store): applied by the client's process only. A member of staff's access request
  task is held under their key id (``#staff/<id>``) as its client; the ``followup.*`` events
  of that task carry it, so they go to that key id's process.
- :data:`BY_EVERY_PROCESS`: product-shelf events (D-13, D-15) and staff events (D-14, D-16)
  have no client. Each process applies them all, in log order, to what it owns: a rating
  joins every process's memory (a later sale of any client reads it) and re-rates only that
  process's holders (:func:`partition_predicate`); an accepted gift's escalation is made by
  the process of the gift's client, a staff access request's task by the process of the
  holder (``FollowupUnitOfWork.owns_client``). Their rows of no client (the rating, the
  member of staff, the training, the staff privacy rows, the applied record and refusals of
  these events) are written by one process only, :data:`SHARED_WRITER`.

An event whose type is not in the catalogue, or that cannot be read at all, goes to
:data:`SHARED_WRITER` alone (it skips it, as the live worker dead-lettered it).
"""

from __future__ import annotations

import hashlib

import orjson

from branchline_shared.events.catalogue import EventType

SHARED_WRITER = 0
"""The process that writes the rows of no client (and applies what cannot be read)."""

BY_CLIENT: frozenset[str] = frozenset(
    {
        EventType.CLIENT_REGISTERED,
        EventType.CLIENT_CONSENT_GRANTED,
        EventType.CLIENT_CONSENT_WITHDRAWN,
        EventType.CLIENT_PERSONAL_DATA_RECORDED,
        EventType.CLIENT_IDENTITY_VERIFIED,
        EventType.CLIENT_RISK_ASSESSED,
        EventType.CLIENT_ERASURE_REQUESTED,
        EventType.CLIENT_DATA_ACCESS_REQUESTED,
        EventType.CLIENT_PERSONAL_DATA_ACCESSED,
        EventType.CLIENT_DATA_READ,
        EventType.CLIENT_SCREENED,
        EventType.CLIENT_BENEFICIAL_OWNER_RECORDED,
        EventType.CLIENT_LATE_ENTRY_APPROVED,
        EventType.CLIENT_PERSONAL_DATA_SHREDDED,
        EventType.CLIENT_ACCOUNT_CLOSED,
        EventType.CLIENT_ACCOUNT_REOPENED,
        EventType.APPOINTMENT_BOOKED,
        EventType.APPOINTMENT_CONFIRMED,
        EventType.APPOINTMENT_CANCELLED,
        EventType.APPOINTMENT_ATTENDED,
        EventType.APPOINTMENT_NO_SHOW,
        EventType.VISIT_ARRIVED,
        EventType.VISIT_NEEDS_CONFIRMED,
        EventType.VISIT_GUIDANCE_GIVEN,
        EventType.VISIT_DOCUMENTS_CHECKED,
        EventType.VISIT_BUSINESS_HANDLED,
        EventType.VISIT_NEXT_STEPS_EXPLAINED,
        EventType.VISIT_CLOSED,
        EventType.CONSULTATION_OPENED,
        EventType.CONSULTATION_ANSWERED,
        EventType.CONSULTATION_PROMISE_RENEGOTIATED,
        EventType.PRODUCT_RECOMMENDED,
        EventType.PRODUCT_RISK_DISCLOSED,
        EventType.PRODUCT_TERMS_CONFIRMED,
        EventType.PRODUCT_SOLD,
        EventType.COMPLAINT_RECEIVED,
        EventType.COMPLAINT_ACKNOWLEDGED,
        EventType.COMPLAINT_PROGRESS_REPORTED,
        EventType.COMPLAINT_RESOLVED,
        EventType.COMPLAINT_CONFIRMED_BY_CLIENT,
        EventType.COMPLAINT_CLOSED,
        EventType.COMPLAINT_PROMISE_RENEGOTIATED,
        EventType.COMPLAINT_CORRECTIVE_ACTION_PLANNED,
        EventType.COMPLAINT_CORRECTIVE_ACTION_COMPLETED,
        EventType.FEEDBACK_SURVEY_ANSWERED,
        EventType.FEEDBACK_RECEIVED,
        EventType.FEEDBACK_RESPONDED,
        EventType.AUDIT_LEGAL_HOLD_PLACED,
        EventType.AUDIT_LEGAL_HOLD_LIFTED,
        EventType.RULE_VIOLATION_REFUSED,
        EventType.FOLLOWUP_TASK_CREATED,
        EventType.FOLLOWUP_COMPLETED,
        EventType.FOLLOWUP_REASSIGNED,
        EventType.FOLLOWUP_OVERDUE,
        EventType.FOLLOWUP_ESCALATED,
    }
)
"""Events about one client: applied by that client's process only."""

BY_EVERY_PROCESS: frozenset[str] = frozenset(
    {
        EventType.PRODUCT_APPROVED,
        EventType.PRODUCT_RERATED,
        EventType.PRODUCT_SUSPENDED,
        EventType.PRODUCT_WITHDRAWN,
        EventType.STAFF_QUALIFIED,
        EventType.STAFF_QUALIFICATION_RENEWED,
        EventType.STAFF_QUALIFICATION_REVOKED,
        EventType.STAFF_TRAINING_RECORDED,
        EventType.STAFF_INTEREST_DECLARED,
        EventType.STAFF_GIFT_RECORDED,
        EventType.STAFF_ERASURE_REQUESTED,
        EventType.STAFF_PERSONAL_DATA_SHREDDED,
        EventType.STAFF_DATA_ACCESS_REQUESTED,
        EventType.STAFF_PERSONAL_DATA_ACCESSED,
    }
)
"""Product-shelf and staff events: applied by every process (see the module's docstring)."""

if BY_CLIENT & BY_EVERY_PROCESS:
    raise RuntimeError("an event type is classified twice for a partitioned rebuild")


def partition_of(client_id: str, parts: int) -> int:
    """The process (0 .. ``parts`` - 1) of ``client_id``: the first 32 bits of the MD5 of its
    UTF-8 bytes, modulo ``parts``. PostgreSQL computes the same (:func:`partition_predicate`):
    a re-rating's ``UPDATE`` of the holdings keeps to its process's clients."""
    if parts <= 1:
        return 0
    digest = hashlib.md5(client_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % parts


def partition_predicate(column: str, parts: str, part: str) -> str:
    """SQL true for the rows whose ``column`` :func:`partition_of` gives ``part`` (``parts``,
    ``part``: the placeholders of the two integers; the database's encoding is UTF-8)."""
    return f"('x' || left(md5({column}), 8))::bit(32)::bigint % {parts} = {part}"


def envelope_fields(value: bytes | None) -> dict[str, object] | None:
    """A message's envelope as a plain mapping, for reading a field or two before it is
    decoded with every check where it is applied; None when it is no JSON object (the
    rebuild's routing and its ordering both read it so: one reading, #12)."""
    if value is None:
        return None
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return envelope if isinstance(envelope, dict) else None


def route_of(value: bytes | None, parts: int) -> int | None:
    """The process a replayed message goes to; ``None``: every process. Reads the envelope's
    type and client only (one parse; the process it goes to decodes it fully)."""
    return route_of_envelope(envelope_fields(value), parts)


def route_of_envelope(envelope: dict[str, object] | None, parts: int) -> int | None:
    """:func:`route_of` of an envelope already parsed (:func:`envelope_fields`: the rebuild's
    order read it, #12)."""
    if envelope is None:
        return SHARED_WRITER
    kind = envelope.get("type")
    if kind in BY_EVERY_PROCESS:
        return None
    client_id = envelope.get("client_id")
    if kind in BY_CLIENT and isinstance(client_id, str):
        return partition_of(client_id, parts)
    return SHARED_WRITER
