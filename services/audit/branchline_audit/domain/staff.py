"""What the audit trail knows of a member of staff for retention (D-04, D-11, D-14, D-16).

Which entries are a member of staff's: those whose envelope names them as the subject
(``staff_id``, no ``client_id``): their ``staff.*`` records (qualifications, training,
interests, gifts: the institution's D-14/D-16 records of its staff's conduct) and the privacy
events about them (``staff.erasure_requested``, ``staff.personal_data_shredded``, access
requests and answers). These are kept, like a client's records from the end of the
relationship, until the retention of their branch's profile has run from the **end of their
employment**, and never while a legal hold stands on them (``#staff/<staff_id>``) or on a
client one of their gift records names: exactly what followup decides for their texts
(``branchline_followup.domain.erasure.staff_held`` and ``staff_shred_plan``).

Not theirs: a ``staff_id`` inside a payload. ``appointment.booked.staff_id`` (the adviser of a
client's appointment) is part of the client's record and kept for the client's retention;
a refusal's ``refused_event.staff_id`` belongs to the refusal's own subject. Counting those from
an adviser's employment would keep a client's data after the client's retention ran (while the
adviser is still employed) or drop it before; the client's record stays the client's.

The catalogue has no staff-departure event: the end of employment is the
``employment_ended_at`` of their ``staff.erasure_requested`` (the latest one naming it, as in
followup). Without one they are still employed: never pruned. The audit consumer records both
facts (the end, and the clients their gifts name) in tables of their own as it appends
(migration 009), so they outlive the pruning of the entries that carried them.

Pure: the facts come from events and rows handed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from branchline_shared.events.catalogue import EventType
from branchline_shared.events.sealing_keys import staff_key_id

STAFF_ERASURE_REQUESTED = EventType.STAFF_ERASURE_REQUESTED.value
STAFF_GIFT_RECORDED = EventType.STAFF_GIFT_RECORDED.value
STAFF_FACT_TYPES = frozenset({STAFF_ERASURE_REQUESTED, STAFF_GIFT_RECORDED})


def staff_of_entry(event: Mapping[str, Any]) -> str | None:
    """The member of staff whose record ``event`` is (its envelope's subject), if any."""
    if isinstance(event.get("client_id"), str):
        return None
    staff_id = event.get("staff_id")
    return staff_id if isinstance(staff_id, str) and staff_id else None


@dataclass(frozen=True, slots=True)
class EmploymentEnd:
    position: int
    staff_id: str
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class GiftClient:
    position: int
    staff_id: str
    client_id: str


def staff_fact_of(position: int, event: Mapping[str, Any]) -> EmploymentEnd | GiftClient | None:
    """The retention fact an appended entry carries: the end of employment its erasure request
    names, or the client its gift record names; ``None`` for anything else (a time that is not
    an RFC 3339 instant with an offset is no end: they stay employed, kept)."""
    event_type = event.get("type")
    if event_type not in STAFF_FACT_TYPES:
        return None
    staff_id = staff_of_entry(event)
    data = event.get("data")
    if staff_id is None or not isinstance(data, Mapping):
        return None
    if event_type == STAFF_GIFT_RECORDED:
        client_id = data.get("client_id")
        return GiftClient(position, staff_id, client_id) if isinstance(client_id, str) else None
    raw = data.get("employment_ended_at")
    if not isinstance(raw, str):
        return None
    try:
        ended = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return None if ended.tzinfo is None else EmploymentEnd(position, staff_id, ended)


@dataclass(frozen=True)
class StaffRetentionState:
    """What the ledger says of its members of staff, for one prune."""

    employment_ends: Mapping[str, datetime] = field(default_factory=dict)
    """Member of staff → the end of their employment (absent: still employed)."""
    gift_clients: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Member of staff → the clients their gift records name."""

    @classmethod
    def of(cls, ends: Iterable[EmploymentEnd], gifts: Iterable[GiftClient]) -> StaffRetentionState:
        """From the recorded facts: the latest request naming an end sets it (followup's
        ``coalesce`` of the newest request)."""
        employment: dict[str, datetime] = {}
        for end in sorted(ends, key=lambda e: e.position):
            employment[end.staff_id] = end.ended_at
        clients: dict[str, set[str]] = {}
        for gift in gifts:
            clients.setdefault(gift.staff_id, set()).add(gift.client_id)
        return cls(employment, {s: frozenset(c) for s, c in clients.items()})

    def hold_subjects(self, staff_id: str) -> frozenset[str]:
        """The subjects whose standing hold holds the member of staff's records: themselves
        (``#staff/<staff_id>``) and every client their gifts name (followup's
        ``staff_hold_subjects``)."""
        return frozenset({staff_key_id(staff_id), *self.gift_clients.get(staff_id, ())})

    def held_by(self, staff_id: str, held: frozenset[str]) -> frozenset[str]:
        """The standing holds' subjects (of ``held``) that hold the member of staff."""
        return self.hold_subjects(staff_id) & held
