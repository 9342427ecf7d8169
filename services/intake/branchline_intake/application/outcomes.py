"""What intake answers for each submitted event, in the domain's words.

A refusal says *why* (:class:`Refusal`), never how HTTP shows it: the entrypoints map each
reason to a status and a title through one table (``entrypoints/problems.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from branchline_shared.eventstore.ports import StoredPosition
from branchline_shared.field_issues import FieldIssue


@dataclass(frozen=True)
class Accepted:
    position: StoredPosition
    duplicate: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "event_id": str(self.position.event_id),
            "stream_id": self.position.stream_id,
            "stream_version": self.position.stream_version,
            "global_position": self.position.global_position,
        }


class Refusal(StrEnum):
    """Why an event was not accepted."""

    INVALID = "validation"
    """The payload does not fit its type's model."""
    WRONG_SUBJECT = "wrong-subject"
    """The envelope names another subject than the type is about."""
    UNKNOWN_EVENT_TYPE = "unknown-event-type"
    SYSTEM_EVENT_TYPE = "system-event-type"
    """A type only Branchline itself emits."""
    ACTOR_NOT_ALLOWED = "actor-not-allowed"
    """The caller may not speak for the event's actor."""
    CLIENT_NOT_FOUND = "client-not-found"
    """No such client, or not the caller's (existence does not leak)."""
    CLIENT_ERASED = "client-erased"
    """The client's key is destroyed (D-04)."""
    STAFF_ERASED = "staff-erased"
    """The member of staff's own key (``#staff/<staff_id>``) is destroyed (D-04)."""
    INSTITUTION_KEY_DESTROYED = "institution-key-destroyed"
    """The institution's key (``#institution``: the product shelf's texts) is destroyed: no
    command destroys it, so only a keystore damaged or changed by hand (Round 31, #12)."""
    IDEMPOTENCY_CONFLICT = "idempotency-conflict"
    """The event id was used for a different event."""
    VERSION_CONFLICT = "version-conflict"
    """The stream is not at the expected version."""
    RULE_VIOLATION = "rule-violation"
    """A rule of docs/rules.md refused the event (``rule``, ``rule_title``)."""


@dataclass(frozen=True)
class Refused:
    """One event not accepted: why, in words for the sender, and which fields."""

    reason: Refusal
    detail: str
    rule: str | None = None
    """The rule id (D-NN) when a rule of docs/rules.md refused the event."""
    rule_title: str | None = None
    """The refusing rule's own short title."""
    issues: tuple[FieldIssue, ...] | None = None
    current_version: int | None = None
    """For a version conflict: the version the stream is at."""
    event_id: uuid.UUID | None = field(default=None, compare=False)
    """For a refusal by a rule: the id the refused event had (its own, or the one given to
    it), from which its recorded refusal's id is derived (a resend with it is refused once):
    named when the outcome of the transaction that recorded it is unknown. Not shown."""


Outcome = Accepted | Refused


def written_as(outcome: Outcome) -> uuid.UUID | None:
    """The event id an outcome's event was written as (its own, or its recorded refusal's
    source), if its transaction wrote one."""
    if isinstance(outcome, Accepted):
        return outcome.position.event_id
    return outcome.event_id
