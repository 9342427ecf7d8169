"""What intake answers for each submitted event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from branchline_shared.eventstore.ports import StoredPosition


@dataclass(frozen=True)
class Accepted:
    position: StoredPosition
    duplicate: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "event_id": str(self.position.event_id),
            "stream_id": self.position.stream_id,
            "stream_version": self.position.stream_version,
            "global_position": self.position.global_position,
        }


@dataclass(frozen=True)
class Refused:
    """A problem+json answer for one event (RFC 9457), ``rule`` when the standard refused it."""

    status: int
    title: str
    detail: str
    kind: str
    rule: str | None = None
    errors: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Outcome = Accepted | Refused
