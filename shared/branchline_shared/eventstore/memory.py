"""An in-memory event store: the fake for application tests, held to the same contract as the
PostgreSQL one (tests/contract)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import (
    ConcurrencyError,
    LogPosition,
    LogRecord,
    PendingPublication,
    RefusalRaced,
    StoredEvent,
    StoredPosition,
)


@dataclass
class OutboxRow:
    id: int
    event_id: uuid.UUID
    topic: str
    message_key: str
    published: bool = False
    position: tuple[int, int] | None = None  # the broker's (partition, offset)


@dataclass
class _State:
    events: list[StoredEvent] = field(default_factory=list)
    by_id: dict[uuid.UUID, StoredEvent] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)


class InMemoryUnitOfWork:
    def __init__(self, state: _State) -> None:
        self._state = state
        self._staged: list[tuple[RecordedEvent, str, bytes | None]] = []
        # The ids that must not be stored when the unit ends (#12, ``claim_ids``).
        self.claimed: set[uuid.UUID] = set()

    def claim_ids(self, claims: Iterable[tuple[uuid.UUID, uuid.UUID, bool]]) -> None:
        """As PostgreSQL's (event store migration 011, #12, D-05): each ``(id sent, id that
        must not be stored, exclusive)``, looked up when the unit ends, after its writes;
        one stored: :class:`RefusalRaced`, nothing of the unit kept. One writer at a time
        here (the store's lock), so no bucket is needed: a refusal and an acceptance of one
        id are never both recorded."""
        self.claimed.update(other for _, other, _ in claims)

    async def lock_streams(
        self,
        stream_ids: Sequence[str],
        *,
        shared: Sequence[str] = (),
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        # one writer at a time already (the store's lock): ``shared`` needs nothing more
        return {s: self._state.versions.get(s, 0) for s in set(stream_ids)}

    async def try_lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        # the store's lock already excludes every other writer: never busy
        return await self.lock_streams(stream_ids)

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        return {i: self._state.by_id[i] for i in event_ids if i in self._state.by_id}

    async def load_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        wanted = set(stream_ids)
        histories: dict[str, list[RecordedEvent]] = {s: [] for s in stream_ids}
        for stored in self._state.events:
            if stored.event.stream_id in wanted:
                histories[stored.event.stream_id].append(stored.event)
        return histories

    def stage(self, event: RecordedEvent, *, topic: str, submission_hash: bytes | None) -> None:
        self._staged.append((event, topic, submission_hash))

    async def commit(self) -> list[StoredPosition]:
        versions = dict(self._state.versions)
        seen: set[uuid.UUID] = set()
        for event, _, _ in self._staged:
            if event.event_id in self._state.by_id or event.event_id in seen:
                raise ConcurrencyError(f"event id {event.event_id} already stored")
            if event.stream_version != versions.get(event.stream_id, 0) + 1:
                raise ConcurrencyError(f"stream {event.stream_id} version conflict")
            versions[event.stream_id] = event.stream_version
            seen.add(event.event_id)
        positions: list[StoredPosition] = []
        for event, topic, submission_hash in self._staged:
            position = StoredPosition(
                event.event_id, event.stream_id, event.stream_version, len(self._state.events) + 1
            )
            stored = StoredEvent(position, event, submission_hash)
            self._state.events.append(stored)
            self._state.by_id[event.event_id] = stored
            self._state.outbox.append(
                OutboxRow(len(self._state.outbox) + 1, event.event_id, topic, event.subject_id)
            )
            positions.append(position)
        self._state.versions = versions
        self._staged.clear()
        return positions


class InMemoryEventStore:
    def __init__(self) -> None:
        self._state = _State()
        self._lock = asyncio.Lock()  # one writer at a time stands in for the row locks

    @property
    def outbox(self) -> list[OutboxRow]:
        return self._state.outbox

    def outbox_port(self) -> InMemoryOutbox:
        """The outbox as a relay reads it (:class:`~branchline_shared.eventstore.ports.Outbox`)."""
        return InMemoryOutbox(self._state)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[InMemoryUnitOfWork]:
        async with self._lock:
            state = self._state
            # ``commit`` replaces the versions' mapping, never changes it: this one is as it was.
            events, outbox, versions = len(state.events), len(state.outbox), state.versions
            try:
                uow = InMemoryUnitOfWork(state)
                yield uow
                # Its claims, last, as PostgreSQL's unit of work checks them (#12).
                found = sum(1 for i in uow.claimed if i in state.by_id)
                if found:
                    raise RefusalRaced(
                        f"{found} event id(s) refused and accepted by two writers at once"
                    )
            except BaseException:
                # All or nothing, as PostgreSQL's transaction: a batch commits in parts (#12),
                # and a failed unit leaves none of them.
                for stored in state.events[events:]:
                    del state.by_id[stored.event.event_id]
                del state.events[events:]
                del state.outbox[outbox:]
                state.versions = versions
                raise

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[StoredEvent]:
        found = [
            s
            for s in self._state.events
            if s.event.stream_id == stream_id and s.event.stream_version >= from_version
        ]
        return found[:limit]

    async def read_log(self, after: LogPosition, *, limit: int = 1000) -> list[LogRecord]:
        records = [
            LogRecord(
                LogPosition(s.position.global_position, s.position.global_position),
                s.position,
                s.event,
            )
            for s in self._state.events
            if s.position.global_position > after.global_position
        ]
        return records[:limit]


class InMemoryOutbox:
    """:class:`~branchline_shared.eventstore.ports.Outbox` of the in-memory store."""

    def __init__(self, state: _State) -> None:
        self._state = state

    async def pending(self, limit: int) -> list[PendingPublication]:
        rows = [r for r in self._state.outbox if not r.published][:limit]
        return [
            PendingPublication(
                r.id,
                r.topic,
                r.message_key,
                self._state.by_id[r.event_id].position.global_position,
                self._state.by_id[r.event_id].event.model_dump(mode="json"),
            )
            for r in rows
        ]

    async def mark_published(
        self, outbox_ids: Sequence[int], positions: Sequence[tuple[int, int]] | None = None
    ) -> None:
        marked: dict[int, tuple[int, int] | None] = (
            dict(zip(outbox_ids, positions, strict=True))
            if positions is not None
            else dict.fromkeys(outbox_ids)
        )
        for row in self._state.outbox:
            if row.id in marked:
                row.published = True
                row.position = marked[row.id]

    async def backlog(self) -> int:
        return sum(1 for r in self._state.outbox if not r.published)
