"""Personal data in payloads (D-04, ADR-0007: find and withhold it.

Which payload keys hold personal data is declared once, per model, in
:data:`~branchline_shared.events.catalogue.PERSONAL_FIELDS`. This module offers the pure
operations on that declaration; the encryption of those values is a later layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from branchline_shared.crypto.sealing import map_personal
from branchline_shared.events.catalogue import PERSONAL_FIELDS

REDACTED = "[redacted]"
"""What a withheld personal value is replaced with."""
RESTRICTED = "[restricted]"
"""What replaces the personal values of a client who asked for erasure (D-04)."""
SHREDDED = "[shredded]"
"""What replaces the personal values of a client whose key is destroyed (D-04)."""

_MAX_KEY_LENGTH = 64


def personal_paths(event_type: str) -> tuple[str, ...] | None:
    """The personal payload keys of ``event_type``; ``None`` for a type the catalogue lacks."""
    return PERSONAL_FIELDS.get(event_type)


def redact_personal(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` whose personal values are replaced by :data:`REDACTED` (D-04).

    An object under a personal key keeps its keys (``fields.phone`` says *that* a phone was
    sent, not which), any other value is replaced whole. For a type the catalogue does not
    know, nothing can be called safe, so nothing is kept.
    """
    return mask_personal(event_type, data, REDACTED)


def mask_personal(
    event_type: str,
    data: Mapping[str, Any],
    marker: str,
    *,
    unknown_type_keeps_keys: bool = False,
) -> dict[str, Any]:
    """:func:`redact_personal` with another marker (:data:`RESTRICTED`, :data:`SHREDDED`:
    D-04). The one masking of personal values: intake's reads and audit's views use it.

    For a type the catalogue lacks no value can be called safe: every value is withheld, and
    with ``unknown_type_keeps_keys`` (the audit trail, where the entry stays visible) its
    top-level keys are shown with the marker, otherwise nothing is kept."""
    paths = personal_paths(event_type)
    if paths is None:
        return {key: marker for key in data} if unknown_type_keeps_keys else {}
    return map_personal(data, paths, lambda value, _path: _mask(value, marker))


def _mask(value: object, marker: str) -> object:
    if isinstance(value, Mapping):
        # Keys of an object of personal fields say *that* a phone was given, not which.
        return {
            key: marker for key in value if isinstance(key, str) and len(key) <= _MAX_KEY_LENGTH
        }
    return marker
