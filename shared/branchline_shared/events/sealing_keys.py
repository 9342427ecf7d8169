"""Whose key seals an event's personal values (ADR-0007, docs/privacy.md "Which key").

Every free text of the catalogue is personal (sealed) unless it is a closed code or a bounded
token (issue #9). The key is the event's subject's:

- a client event: the client's key (shredded when the client is erased, D-04);
- a staff event (D-14, D-16): the member of staff's own key, ``#staff/<staff_id>`` (a member
  of staff is a data subject too; destroying that key shreds their texts);
- a product-shelf event (D-13): the institution's key, ``#institution`` (its texts are about
  the institution's products; sealed so that no free text is ever in clear in the stores, the
  topics or the audit trail, and so that a careless text naming a person can still be made
  unreadable by rotating that key).

``#`` cannot begin an identifier, so these key ids never collide with a client id.
"""

from __future__ import annotations

from branchline_shared.crypto.sealing import DataKey, seal
from branchline_shared.events.catalogue import SUBJECT_OF
from branchline_shared.events.envelope import LateEntry, RecordedEvent, Subject

INSTITUTION_KEY_ID = "#institution"
STAFF_KEY_PREFIX = "#staff/"


def staff_key_id(staff_id: str) -> str:
    """The key id of a member of staff's own texts (destroyed by their erasure, D-04)."""
    return STAFF_KEY_PREFIX + staff_id


def staff_of_key(key_id: str) -> str | None:
    """The member of staff whose own key ``key_id`` is; None for any other key."""
    if key_id.startswith(STAFF_KEY_PREFIX):
        return key_id.removeprefix(STAFF_KEY_PREFIX)
    return None


def sealing_key_id(
    event_type: str,
    *,
    client_id: str | None,
    staff_id: str | None,
) -> str | None:
    """The key id that seals the personal values of an event of ``event_type`` about this
    subject; None when the event names no subject of its kind (nothing can be sealed)."""
    subject = SUBJECT_OF.get(event_type, Subject.CLIENT)
    if subject is Subject.STAFF:
        return None if staff_id is None else staff_key_id(staff_id)
    if subject is Subject.PRODUCT:
        return INSTITUTION_KEY_ID
    return client_id


def sealing_key_of(event: RecordedEvent) -> str | None:
    return sealing_key_id(event.type, client_id=event.client_id, staff_id=event.staff_id)


LATE_ENTRY_PATH = "late_entry.reason"
"""The path a late-entry reason is sealed under (part of its associated data)."""


def sealed_late_entry(late_entry: LateEntry, key: DataKey, key_id: str) -> LateEntry:
    """The envelope's late entry with its free-text reason sealed with ``key`` (issue #9)."""
    return LateEntry(reason=seal(late_entry.reason, key, client_id=key_id, path=LATE_ENTRY_PATH))
