"""An outbox held in a list, for tests of the relay without a database."""

from __future__ import annotations

from typing import Any

from branchline_shared.eventstore.ports import PendingPublication


class ListOutbox:
    """The relay's view of an outbox (:class:`~branchline_shared.eventstore.ports.Outbox`):
    ``rows`` pending in order until marked published."""

    def __init__(self, rows: list[PendingPublication] | None = None) -> None:
        self.rows: list[PendingPublication] = [] if rows is None else rows
        self.marked: list[int] = []

    def add(self, count: int, topic: str, envelope: dict[str, Any]) -> None:
        """``count`` rows more into ``topic``, each numbered on from the last, holding
        ``envelope`` with ``{n}`` in its text values replaced by the row's number."""
        for _ in range(count):
            n = len(self.rows) + 1
            value = {k: v.format(n=n) if isinstance(v, str) else v for k, v in envelope.items()}
            self.rows.append(PendingPublication(n, topic, f"key-{n}", n, value))

    async def pending(self, limit: int) -> list[PendingPublication]:
        return [r for r in self.rows if r.outbox_id not in self.marked][:limit]

    async def mark_published(self, outbox_ids: Any, positions: Any = None) -> None:
        self.marked.extend(outbox_ids)

    async def backlog(self) -> int:
        return len(self.rows) - len(self.marked)
