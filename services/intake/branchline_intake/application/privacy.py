"""D-04 restriction at intake: from the erasure request on, the client's personal values are
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

ERASURE_REQUESTED = EventType.CLIENT_ERASURE_REQUESTED.value
MARKERS = {PrivacyState.RESTRICTED: RESTRICTED, PrivacyState.SHREDDED: SHREDDED}


async def register_restrictions(
    keys: ClientKeyStore, events: Sequence[RecordedEvent], outcomes: Sequence[Outcome]
) -> None:
    """Register the clients of accepted erasure requests as restricted (idempotent). Runs
    after the commit: should the process die in between, the followup worker registers them
    when it applies the request (docs/privacy.md)."""
    for event, outcome in zip(events, outcomes, strict=True):
        if event.type == ERASURE_REQUESTED and isinstance(outcome, Accepted):
            await keys.restrict(
                event.subject_id, at=event.occurred_at, source_event_id=outcome.position.event_id
            )


async def readable(keys: ClientKeyStore, events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    """``events`` as a reader may see them: the personal values of restricted or shredded
    clients replaced by a marker."""
    # only a client's events carry personal values (a product's or staff's carry none)
    states = await keys.states(sorted({e.client_id for e in events if e.client_id is not None}))
    shown: list[RecordedEvent] = []
    for event in events:
        if event.client_id is None:
            shown.append(event)
            continue
        marker = MARKERS.get(states.get(event.client_id, PrivacyState.ACTIVE))
        if marker is None:
            shown.append(event)
            continue
        masked = mask_personal(event.type, event.data, marker)
        shown.append(event if masked == event.data else event.model_copy(update={"data": masked}))
    return shown
