"""Decide without re-reading history: a write reads only what its remembered state lacks.

The decider remembers the state of recent streams (``RecordedDecider``). Reading a client's
whole history for each write would still cost O(events) in the database and in parsing;
this store wrapper asks the decider what it remembers (events covered, last event id) and
loads only the events from that last one on, as a :class:`HistoryTail`. The tail's first
event proves the remembered state still fits the stream (streams are append-only, and the
stream is locked before it is read); a stream the decider does not remember, or whose
remembered event is not where it should be, is read whole, as before. Another intake
process may have appended meanwhile: those events are in the tail and are folded on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from branchline_intake.application.store_views import ReadsFromStore
from branchline_intake.domain import RecordedDecider
from branchline_intake.domain.recorded import HistoryTail
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import (
    EventStore,
    GuessingStore,
    GuessingUnitOfWork,
    GuessWrong,
    SharedTransaction,
    StoredEvent,
    StoredPosition,
    UnitOfWork,
)


class _TailLoadingUnitOfWork:
    def __init__(self, inner: UnitOfWork, decider: RecordedDecider) -> None:
        self._inner = inner
        self._decider = decider

    async def lock_streams(
        self,
        stream_ids: Sequence[str],
        *,
        shared: Sequence[str] = (),
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        return await self._inner.lock_streams(stream_ids, shared=shared, likely=likely)

    async def try_lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        return await self._inner.try_lock_streams(stream_ids)

    def claim_ids(self, claims: Iterable[tuple[uuid.UUID, uuid.UUID, bool]]) -> None:
        claim = getattr(self._inner, "claim_ids", None)  # the store's, if it claims (#12)
        if claim is not None:
            claim(claims)

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        return await self._inner.find_existing(event_ids)

    async def load_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        load_tails = getattr(self._inner, "load_stream_tails", None)
        known = {s: k for s in stream_ids if (k := self._decider.remembered(s)) is not None}
        if load_tails is None or not known:
            return await self._inner.load_streams(stream_ids)
        tails: dict[str, list[RecordedEvent]] = await load_tails(
            {s: count for s, (count, _, _) in known.items()}
        )
        histories: dict[str, list[RecordedEvent]] = {}
        whole = [s for s in stream_ids if s not in known]
        for stream_id, base in known.items():
            tail = tails.get(stream_id, [])
            if tail and tail[0].event_id == base[1]:
                histories[stream_id] = HistoryTail(base, tail)
            else:  # the store does not hold what was remembered: read it whole
                whole.append(stream_id)
        if whole:
            histories.update(await self._inner.load_streams(whole))
        return histories

    def stage(self, event: RecordedEvent, *, topic: str, submission_hash: bytes | None) -> None:
        self._inner.stage(event, topic=topic, submission_hash=submission_hash)

    async def commit(self) -> list[StoredPosition]:
        return await self._inner.commit()


class _TailLoadingGuessing(_TailLoadingUnitOfWork):
    """A guessing unit of work seen through the tail loader: a stream the decider remembers
    (with its last event) is taken at its remembered version, and its history is the
    remembered one, nothing after it (``RecordedDecider.remembered_tail``): the unit's write
    checks that the stream still ends there (#12). Any other stream is taken for new."""

    def __init__(self, inner: GuessingUnitOfWork, decider: RecordedDecider) -> None:
        super().__init__(inner, decider)
        self._guessing = inner
        self._tails: dict[str, HistoryTail] = {}

    @property
    def sent(self) -> bool:
        return self._guessing.sent

    def remember(self, streams: Mapping[str, tuple[int, uuid.UUID]]) -> None:
        self._guessing.remember(streams)

    def may_be_stored_as(self, hashes: Mapping[uuid.UUID, bytes]) -> None:
        allow = getattr(self._guessing, "may_be_stored_as", None)
        if allow is not None:
            allow(hashes)

    async def lock_streams(
        self,
        stream_ids: Sequence[str],
        *,
        shared: Sequence[str] = (),
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        tails = {
            s: tail
            for s in stream_ids
            if s not in self._tails and (tail := self._decider.remembered_tail(s)) is not None
        }
        if tails:
            self._guessing.remember(
                {s: (tail.base_count, tail.base_last_id) for s, tail in tails.items()}
            )
            self._tails.update(tails)
        return await self._inner.lock_streams(stream_ids, shared=shared, likely=likely)

    async def load_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        histories: dict[str, list[RecordedEvent]] = {}
        fresh = [s for s in stream_ids if s not in self._tails]
        if fresh:
            histories.update(await self._inner.load_streams(fresh))
        for s in stream_ids:
            if (tail := self._tails.get(s)) is not None:  # a copy: decisions append to it
                histories[s] = HistoryTail(
                    (tail.base_count, tail.base_last_id, tail.base_state), list(tail)
                )
        return histories


class _TailLoadingShared:
    def __init__(self, inner: SharedTransaction, decider: RecordedDecider) -> None:
        self._inner = inner
        self._decider = decider

    async def lock_streams(self, stream_ids: Sequence[str], *, shared: Sequence[str] = ()) -> None:
        await self._inner.lock_streams(stream_ids, shared=shared)

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> None:
        await self._inner.find_existing(event_ids)

    def isolated(self, *, alone: bool = False) -> AbstractAsyncContextManager[None]:
        return self._inner.isolated(alone=alone)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self._inner.unit_of_work() as uow:
            yield _TailLoadingUnitOfWork(uow, self._decider)


class TailLoadingStore(ReadsFromStore):
    """An event store whose writers read only the history their decider lacks; its reads
    go to the store itself."""

    def __init__(self, store: EventStore, decider: RecordedDecider) -> None:
        self._store = store
        self._reads = store
        self._decider = decider

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self._store.unit_of_work() as uow:
            yield _TailLoadingUnitOfWork(uow, self._decider)

    @asynccontextmanager
    async def guessing_unit_of_work(self) -> AsyncIterator[GuessingUnitOfWork]:
        if not isinstance(self._store, GuessingStore):
            raise GuessWrong("the store cannot guess")
        async with self._store.guessing_unit_of_work() as uow:
            yield _TailLoadingGuessing(uow, self._decider)

    @asynccontextmanager
    async def shared_transaction(self) -> AsyncIterator[SharedTransaction]:
        shared_transaction: Any = self._store.shared_transaction  # type: ignore[attr-defined]
        async with shared_transaction() as shared:
            yield _TailLoadingShared(shared, self._decider)
