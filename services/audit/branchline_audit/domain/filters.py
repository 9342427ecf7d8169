"""The filters of a trail read (``GET /v1/audit/entries``, exports, the console): a value the
use cases pass to the ledger port; the ledger adapter turns it into SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class LedgerFilters:
    """The filters of ``GET /v1/audit/entries`` (docs/api.md); ``type`` may name a family
    (``followup.*``). ``from``/``to`` bound ``occurred_at`` (from inclusive, to exclusive)."""

    client_id: str | None = None
    actor_id: str | None = None
    branch_id: str | None = None
    type: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in self.as_dict().values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "actor_id": self.actor_id,
            "branch_id": self.branch_id,
            "type": self.type,
            "from": self.occurred_from.isoformat() if self.occurred_from else None,
            "to": self.occurred_to.isoformat() if self.occurred_to else None,
        }
