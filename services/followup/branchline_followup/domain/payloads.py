"""The rules read an event's typed payload, never ``data`` by string key (issue #9).

:func:`read_payload` reads the payload of an event decoded once where it was received (the
catalogue's model of its type, upcast first: :mod:`branchline_shared.events.typed`); a
payload of another model is an :class:`InvalidEventData` of the rule that needed it, naming
the problem and never a value.
"""

from __future__ import annotations

from typing import TypeVar

from branchline_followup.domain.vocabulary import TaskRule
from branchline_shared.events.catalogue import EventPayload
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, UnreadablePayload, payload_as

P = TypeVar("P", bound=EventPayload)


class InvalidEventData(ValueError):
    """An event's ``data`` lacks a field a rule needs, or holds an unreadable value."""

    def __init__(self, rule: TaskRule, event: RecordedEvent, field: str, problem: str) -> None:
        super().__init__(f"{rule.value}: {event.type} {event.event_id}: data.{field} {problem}")
        self.rule = rule
        self.event_type = event.type
        self.event_id = event.event_id
        self.field = field


def read_payload(event: Decoded, model: type[P], rule: TaskRule) -> P:
    """``event``'s payload as ``model`` (the catalogue's model of its type)."""
    try:
        return payload_as(event, model)
    except UnreadablePayload as exc:
        raise InvalidEventData(rule, event.envelope, exc.field, exc.problem) from None
