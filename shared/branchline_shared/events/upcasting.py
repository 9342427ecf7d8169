"""Upcasters: read events written under an older payload schema version (ADR-0004).

A breaking change to a payload model bumps its ``SCHEMA_VERSION`` from N to N+1 and registers
an upcaster ``(type, N)``: a pure function from the ``data`` of version N to the ``data`` of
version N+1. Stored events are never rewritten; a reader applies :func:`upcast` to every
:class:`~.envelope.RecordedEvent` it reads (from the event store or a topic) before parsing its
payload, so domain code only ever sees current versions.

``branchline schemas check`` fails when a type is at version N+1 and an upcaster from an older
committed version is missing. The registry is empty while every type is at version 1; register
the product's upcasters in this module, e.g.::

    @UPCASTERS.register("product.sold", from_version=1)
    def _product_sold_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": data.get("currency", "CNY")}

An upcaster receives a private copy of ``data`` and must not do I/O. Personal values arrive
sealed (:mod:`branchline_shared.crypto.sealing`): move or drop them, never read them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from branchline_shared.events.catalogue import CATALOGUE_VERSION, EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.vocabulary import FollowupOutcome

__all__ = [
    "UPCASTERS",
    "MissingUpcaster",
    "NewerSchemaVersion",
    "Upcaster",
    "UpcasterRegistry",
    "upcast",
]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""``data`` of version N → ``data`` of version N+1."""


class MissingUpcaster(LookupError):
    """An event of an older version that no registered upcaster can bring up to date."""

    def __init__(self, event_type: str, from_version: int, to_version: int) -> None:
        super().__init__(
            f"no upcaster for {event_type!r} from v{from_version} (needed to reach v{to_version})"
        )
        self.event_type = event_type
        self.from_version = from_version


class NewerSchemaVersion(ValueError):
    """An event written by a newer release than this reader: upgrade the reader."""

    def __init__(self, event_type: str, version: int, known: int) -> None:
        super().__init__(
            f"{event_type!r} v{version} is newer than this reader's v{known}: upgrade it"
        )
        self.event_type = event_type
        self.version = version


class UpcasterRegistry:
    """(event type, from version) → upcaster to the next version."""

    def __init__(self) -> None:
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def add(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        if from_version < 1:
            raise ValueError("schema versions start at 1")
        key = (event_type, from_version)
        if key in self._upcasters:
            raise ValueError(f"an upcaster for {event_type!r} from v{from_version} exists")
        self._upcasters[key] = upcaster

    def register(self, event_type: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`add`."""

        def decorate(upcaster: Upcaster) -> Upcaster:
            self.add(event_type, from_version, upcaster)
            return upcaster

        return decorate

    def registered(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._upcasters)

    def __contains__(self, key: object) -> bool:
        return key in self._upcasters

    def upcast_data(
        self, event_type: str, version: int, data: Mapping[str, Any], to_version: int
    ) -> dict[str, Any]:
        """``data`` of ``version`` brought to ``to_version``, one step at a time."""
        if version > to_version:
            raise NewerSchemaVersion(event_type, version, to_version)
        current = copy.deepcopy(dict(data))
        for step in range(version, to_version):
            upcaster = self._upcasters.get((event_type, step))
            if upcaster is None:
                raise MissingUpcaster(event_type, step, to_version)
            current = upcaster(current)
        return current

    def upcast(
        self, event: RecordedEvent, current: Mapping[str, int] = CATALOGUE_VERSION
    ) -> RecordedEvent:
        """``event`` at the current schema version of its type (the same object when it is
        already current or its type is unknown to ``current``)."""
        target = current.get(event.type)
        if target is None or event.schema_version == target:
            return event
        data = self.upcast_data(event.type, event.schema_version, event.data, target)
        return event.model_copy(update={"data": data, "schema_version": target})


UPCASTERS = UpcasterRegistry()
"""The product's upcasters."""


@UPCASTERS.register(EventType.FOLLOWUP_COMPLETED, from_version=1)
def _followup_completed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 ``outcome`` was free text (it could carry personal details in clear, issue #9);
    v2 is a closed code: a v1 text that is not a code reads as ``other``."""
    outcome = data.get("outcome")
    codes = {o.value for o in FollowupOutcome}
    return {**data, "outcome": outcome if outcome in codes else FollowupOutcome.OTHER.value}


@UPCASTERS.register(EventType.PRODUCT_RISK_DISCLOSED, from_version=1)
def _risk_disclosed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 recorded one acknowledged flag; v2 itemises the disclosure (D-05). A v1 disclosure
    itemised nothing, so it reads as disclosing no item: it shows what was recorded and
    cannot back a sale decided under the itemised rule."""
    return {**data, "items": []}


_NAMED_TERMS = ("rate", "expected_return", "period", "fees", "repayment")


@UPCASTERS.register(EventType.PRODUCT_TERMS_CONFIRMED, from_version=1)
def _terms_confirmed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 terms were any keys; v2 names the terms D-05 requires and keeps the rest, as shown
    to the client, under ``other``."""
    terms = dict(data.get("terms", {}))
    named = {key: terms.pop(key) for key in _NAMED_TERMS if key in terms}
    return {**data, "terms": {**named, "other": terms}}


def upcast(
    event: RecordedEvent,
    *,
    registry: UpcasterRegistry = UPCASTERS,
    current: Mapping[str, int] = CATALOGUE_VERSION,
) -> RecordedEvent:
    """Bring a recorded event to the current schema version of its type (see the module)."""
    return registry.upcast(event, current)
