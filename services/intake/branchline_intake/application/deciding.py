"""The seam between the write path and the rules of the standard.

A :class:`Decider` sees a client's history and one candidate event and answers with the event
to append (possibly enriched) or a :class:`Violation` carrying the rule id. It is pure: the
same decider runs wherever the rules are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from branchline_shared.events.envelope import RecordedEvent


@dataclass(frozen=True)
class Violation:
    rule: str
    title: str
    detail: str
    status: int = 409
    field: str | None = None


class Decider(Protocol):
    def __call__(
        self, history: Sequence[RecordedEvent], candidate: RecordedEvent
    ) -> RecordedEvent | Violation: ...
