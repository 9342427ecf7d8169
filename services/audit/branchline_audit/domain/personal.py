"""What an audit reader may see of the personal fields of an entry (D-04, D-11, ADR-0007).

Decision: nobody reads personal data in clear through the audit trail. The ledger keeps each
event as it was recorded (personal fields in their encrypted form once the encryption layer of
ADR-0007 writes them so; hashes are over that stored form). The views:

- ``full``: the event as stored; its hash can be recomputed from it. Given for events with no
  personal value, for the ledger's own ``audit.*`` entries, and, for roles listed in the setting
  ``audit_stored_form_roles``, the stored (ciphertext) form.
- ``masked``: each personal value replaced by ``[redacted]`` (the default for every role).
- ``restricted``: the client asked for erasure (D-04): ``[restricted]``, for everyone.
- ``shredded``: the client's key is destroyed (crypto-shredding): ``[shredded]``, for everyone.
- ``pruned``: the payload was dropped by retention; the envelope is all that is left.

Which payload keys are personal is declared once, in the event catalogue
(:func:`branchline_shared.events.personal_data.personal_paths`), and masked by the one
:func:`~branchline_shared.events.personal_data.mask_personal`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from branchline_audit.domain.records import AUDIT_TYPE_PREFIX, is_pruned_marker
from branchline_shared.events.catalogue import EventType
from branchline_shared.events.personal_data import (
    REDACTED,
    RESTRICTED,
    SHREDDED,
    mask_personal,
)
from branchline_shared.events.sealing_keys import staff_key_id


class View(StrEnum):
    FULL = "full"
    MASKED = "masked"
    RESTRICTED = "restricted"
    SHREDDED = "shredded"
    PRUNED = "pruned"


class ClientDataState(StrEnum):
    ACTIVE = "active"
    RESTRICTED = "restricted"
    SHREDDED = "shredded"


MARKERS = {View.MASKED: REDACTED, View.RESTRICTED: RESTRICTED, View.SHREDDED: SHREDDED}


@dataclass(frozen=True)
class PersonalDataPolicy:
    """Decides the view of one entry for one reader; pure, so tests need no database."""

    stored_form_roles: frozenset[str] = frozenset()

    def view(
        self,
        event: Mapping[str, Any],
        *,
        client_state: ClientDataState,
        reader_roles: Iterable[str],
    ) -> tuple[dict[str, Any], View]:
        if is_pruned_marker(event):
            return dict(event), View.PRUNED
        event_type = str(event.get("type", ""))
        if event_type.startswith(AUDIT_TYPE_PREFIX):
            return dict(event), View.FULL
        if client_state is ClientDataState.SHREDDED:
            wanted = View.SHREDDED
        elif client_state is ClientDataState.RESTRICTED:
            wanted = View.RESTRICTED
        elif self.stored_form_roles & frozenset(reader_roles):
            return dict(event), View.FULL
        else:
            wanted = View.MASKED
        data = event.get("data")
        if not isinstance(data, Mapping):
            return dict(event), View.FULL
        masked = mask_personal(event_type, data, MARKERS[wanted], unknown_type_keeps_keys=True)
        late = _masked_late_entry(event.get("late_entry"), MARKERS[wanted])
        if masked == data and late is None:
            return dict(event), View.FULL  # nothing personal in it: show it verifiable
        shown = {**event, "data": masked}
        if late is not None:
            shown["late_entry"] = late
        return shown, wanted


def _masked_late_entry(late_entry: object, marker: str) -> dict[str, Any] | None:
    """The envelope's late entry with its reason (free text, issue #9) masked; None if the
    event has no reason to mask."""
    if isinstance(late_entry, Mapping) and isinstance(late_entry.get("reason"), str):
        return {**late_entry, "reason": marker}
    return None


# The event types that change what may be shown of a client (here, not in
# :mod:`.records`: a verifying segment's process imports that module and not the event
# catalogue, #12).
ERASURE_REQUESTED = EventType.CLIENT_ERASURE_REQUESTED.value
"""D-04: the client's personal data is restricted at once."""
PERSONAL_DATA_SHREDDED = EventType.CLIENT_PERSONAL_DATA_SHREDDED.value
"""The seam for crypto-shredding (ADR-0007): once such an event is recorded the client's
personal fields are gone from every audit view. The issue that destroys keys emits it."""
STAFF_ERASURE_REQUESTED = EventType.STAFF_ERASURE_REQUESTED.value
STAFF_PERSONAL_DATA_SHREDDED = EventType.STAFF_PERSONAL_DATA_SHREDDED.value
"""The same for a member of staff's own texts (sealed under ``#staff/<staff_id>``)."""
_STATE_OF = {
    ERASURE_REQUESTED: "restricted",
    PERSONAL_DATA_SHREDDED: "shredded",
    STAFF_ERASURE_REQUESTED: "restricted",
    STAFF_PERSONAL_DATA_SHREDDED: "shredded",
}


def data_subject_of(event: Mapping[str, Any]) -> str | None:
    """The data subject whose state decides what is shown of ``event``'s personal values, by
    the key that sealed them: the client's id, or ``#staff/<staff_id>`` for a member of
    staff's own events (never a client id: ``#`` cannot begin one); None for neither."""
    client_id = event.get("client_id")
    if isinstance(client_id, str):
        return client_id
    staff_id = event.get("staff_id")
    if isinstance(staff_id, str):
        return staff_key_id(staff_id)
    return None


def restriction_of(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(data subject, state)`` when ``event`` changes what may be shown of a client or of a
    member of staff (D-04)."""
    state = _STATE_OF.get(str(event.get("type", "")))
    subject = data_subject_of(event)
    if state is None or subject is None:
        return None
    return subject, state
