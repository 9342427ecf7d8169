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
(:func:`branchline_shared.events.personal_data.personal_paths`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from branchline_audit.domain.records import AUDIT_TYPE_PREFIX, is_pruned_marker
from branchline_shared.crypto.sealing import map_personal
from branchline_shared.events.personal_data import personal_paths


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


MARKERS = {
    View.MASKED: "[redacted]",
    View.RESTRICTED: "[restricted]",
    View.SHREDDED: "[shredded]",
}
_MAX_KEY_LENGTH = 64


def _mask(value: object, marker: str) -> object:
    if isinstance(value, Mapping):
        # Keys of an object of personal fields say *that* a phone was given, not which.
        return {k: marker for k in value if isinstance(k, str) and len(k) <= _MAX_KEY_LENGTH}
    return marker


def _masked_data(event_type: str, data: Mapping[str, Any], marker: str) -> dict[str, Any]:
    paths = personal_paths(event_type)
    if paths is None:  # a type the catalogue lacks: nothing can be called safe
        return {key: marker for key in data}
    return map_personal(data, paths, lambda value, _path: _mask(value, marker))


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
        masked = _masked_data(event_type, data, MARKERS[wanted])
        if masked == data:
            return dict(event), View.FULL  # nothing personal in it: show it verifiable
        return {**event, "data": masked}, wanted
