"""The one read delegation of the intake's event store views.

Several wrappers show writers the event store with a unit of work of their own (a group
commit's callers: ``group_commit``; the tail loader: ``history_tail``) while every read goes
to the store beneath, unchanged. The delegation lives here once, so a read the
:class:`~branchline_shared.eventstore.ports.EventStore` port gains is added in one place (#12).
"""

from __future__ import annotations

from branchline_shared.eventstore.ports import EventStore, LogPosition, LogRecord, StoredEvent


class ReadsFromStore:
    """A view of the event store whose reads go to the store itself (``_reads``, set by the
    view); its unit of work is the view's own."""

    _reads: EventStore

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[StoredEvent]:
        return await self._reads.read_stream(stream_id, from_version=from_version, limit=limit)

    async def read_log(self, after: LogPosition, *, limit: int = 1000) -> list[LogRecord]:
        return await self._reads.read_log(after, limit=limit)
