"""D-04 restriction at intake: from the erasure request on, the personal values of its data
subject (a client, or a member of staff: their own texts, sealed under ``#staff/<id>``) are
served to nobody, and once their key is destroyed nothing of them is left to serve.

Every personal value intake stores is already sealed (ADR-0007); restriction adds that even
the ciphertext is withheld from readers (it would open again for anyone holding the master
key until the shredding), and that the register every service consults says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from branchline_intake.application.outcomes import Accepted, Outcome
from branchline_shared.crypto.keystore import ClientKeyStore, PrivacyState
from branchline_shared.events.catalogue import EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.personal_data import RESTRICTED, SHREDDED, mask_personal
from branchline_shared.events.sealing_keys import sealing_key_of

ERASURE_REQUESTED = EventType.CLIENT_ERASURE_REQUESTED.value
STAFF_ERASURE_REQUESTED = EventType.STAFF_ERASURE_REQUESTED.value
MARKERS = {PrivacyState.RESTRICTED: RESTRICTED, PrivacyState.SHREDDED: SHREDDED}


async def register_restrictions(
    keys: ClientKeyStore, events: Sequence[RecordedEvent], outcomes: Sequence[Outcome]
) -> None:
    """Register the data subjects (clients, members of staff) of accepted erasure requests as
    restricted (idempotent). Runs
    after the commit: should the process die in between, the followup worker registers them
    when it applies the request (docs/privacy.md)."""
    for event, outcome in zip(events, outcomes, strict=True):
        if event.type not in (ERASURE_REQUESTED, STAFF_ERASURE_REQUESTED):
            continue
        # the register is keyed by the key id: a client's id, or ``#staff/<staff_id>``
        key_id = sealing_key_of(event)
        if key_id is not None and isinstance(outcome, Accepted):
            await keys.restrict(
                key_id, at=event.occurred_at, source_event_id=outcome.position.event_id
            )


async def readable(keys: ClientKeyStore, events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    """``events`` as a reader may see them: the personal values of restricted or shredded
    data subjects (by the key that sealed them: a client's, a member of staff's) replaced by
    a marker."""
    key_ids = [sealing_key_of(e) for e in events]
    states = await keys.states(sorted({k for k in key_ids if k is not None}))
    shown: list[RecordedEvent] = []
    for event, key_id in zip(events, key_ids, strict=True):
        state = PrivacyState.ACTIVE if key_id is None else states.get(key_id, PrivacyState.ACTIVE)
        marker = MARKERS.get(state)
        if marker is None:
            shown.append(event)
            continue
        masked = mask_personal(event.type, event.data, marker)
        shown.append(event if masked == event.data else event.model_copy(update={"data": masked}))
    return shown
