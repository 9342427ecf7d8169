"""Abstractions of the event store, implemented in memory and on PostgreSQL.

A write goes through a :class:`UnitOfWork`: lock the streams about to change, read what is
needed to decide (existing ids, histories, versions), stage new events, commit. Everything
staged in one unit of work is committed atomically together with its outbox rows, or not at
all. The application layer decides; the store only records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from branchline_shared.events.envelope import RecordedEvent


@dataclass(frozen=True)
class StoredPosition:
    """Where an event sits: the answer intake gives for an accepted event."""

    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    global_position: int


@dataclass(frozen=True)
class StoredEvent:
    position: StoredPosition
    event: RecordedEvent
    submission_hash: bytes | None


@dataclass(frozen=True)
class LogPosition:
    """A point in the store's ordered log: (writing transaction, global position)."""

    tx_id: int
    global_position: int

    @classmethod
    def start(cls) -> LogPosition:
        return cls(0, 0)


@dataclass(frozen=True)
class LogRecord:
    log_position: LogPosition
    position: StoredPosition
    event: RecordedEvent


@dataclass(frozen=True)
class PendingPublication:
    """An outbox row not yet published, with the event it carries (as stored: the wire
    carries the stored envelope unchanged)."""

    outbox_id: int
    topic: str
    message_key: str
    global_position: int
    envelope: dict[str, Any]
    requeued: bool = False
    """Queued again after a first publication (a repair, ``reconcile.stores.requeue``): the
    relay says so in the ``requeued`` header."""


class Outbox(Protocol):
    """The store's transactional outbox, as its relay reads it (ADR-0001): the rows committed
    with their events, in outbox order, until marked published."""

    async def pending(self, limit: int) -> list[PendingPublication]:
        """Rows not yet published, oldest first (per key: commit order, the streams' locks)."""
        ...

    async def mark_published(
        self, outbox_ids: Sequence[int], positions: Sequence[tuple[int, int]] | None = None
    ) -> None:
        """Mark rows published; ``positions``, if given, the broker's (partition, offset) of
        each, in the same order (what a consumer's self-check compares with the consumer
        group's committed offsets, :mod:`branchline_shared.reconcile.progress`)."""
        ...

    async def backlog(self) -> int:
        """How many rows are not yet published."""
        ...


class EventStoreError(Exception):
    """Base of the event store's small error tree."""


class ConcurrencyError(EventStoreError):
    """Two writers raced for one stream version or event id; the unit of work was rolled back."""


class LocksDeadlocked(ConcurrencyError):
    """The server broke a lock cycle by rolling back this transaction (40P01): nothing was
    written, nothing answered; running the whole transaction again is safe. Writers of this
    release take their streams in one sorted pass and close no cycle on streams among
    themselves; one of an older release (new streams created before existing ones are locked)
    still can, during a rolling upgrade; and two writers storing the same client-chosen event
    ids on different streams, in opposite orders, wait on each other in the events' unique
    index, which no stream order covers (docs/intake.md, "Lock order")."""


class EventIdsBusy(ConcurrencyError):
    """A write of a transaction that already holds (uncommitted) an event id above one of this
    write's ids met another transaction's uncommitted id, and did not wait for it: waiting
    there, out of the one id order every writer inserts in, could close a cycle with a writer
    of the same ids (docs/intake.md, "Event ids are not streams"). Nothing waited; the
    transaction (or the group caller's savepoint) is unusable: run it again so that its ids
    are inserted by one statement, in id order (#12)."""


class IdsTakenAfterLostCommit(ConcurrencyError):
    """A transaction's ``COMMIT`` (or a guessed group's self-committing write) was lost with
    its connection, and the store, asked, holds another writer's events under some of the
    event ids it wrote (a caller's own id, resent meanwhile by another request): it did not
    commit, nothing of it is stored. Run it again, decided on what is stored: the
    idempotency rules answer those ids as they answer a resend (a duplicate, or
    ``idempotency-conflict``), not a 202 for another writer's event (Round 25, #12,
    docs/reliability.md)."""


class RefusalRaced(ConcurrencyError):
    """An event id's refusal and another event accepted under it were recorded at the same
    moment by two transactions (#12, D-05): this one claimed the id after its writes (event
    store migration 011, ``es_claim_event_ids``) and found the other's row, committed while
    it waited. Rolled back, nothing answered: run it again, decided on what is stored (a
    reused id is 409 ``idempotency-conflict``, the same submission a resend's answer)."""


class StreamsBusy(EventStoreError):
    """:meth:`UnitOfWork.try_lock_streams` could not lock a stream at once (another
    transaction holds it, or it does not exist yet). Nothing waited; the transaction is
    unusable and must be run again with those streams locked up front, in the global order."""


class NotIsolated(EventStoreError):
    """A shared transaction's only caller, run without a savepoint, lost a race its retry
    would need a savepoint for: the transaction is unusable and must be run again with its
    caller in a savepoint (#12)."""


class GuessWrong(EventStoreError):
    """A guessing unit of work (:class:`GuessingStore`) cannot stand: a stream it took for
    new exists or an event id it took for not stored is (its statement failed whole), or it
    was asked for what one self-committing statement cannot do (a read lock, a refusal to
    record, a second write).
    Nothing of it was written: run the work the ordinary way (#12).

    ``taken_streams`` / ``taken_ids``: after the write was refused, what of it the store
    holds otherwise than guessed, asked in one statement (Round 27, #12): every stream taken
    for new that exists or taken at a remembered version that moved, every event id taken
    for not stored that is; empty when nothing was asked or found (the rest of a guessed
    group can be guessed again without them). They are identifiers the write was given,
    never logged.

    ``refusal_streams``: the streams :meth:`UnitOfWork.try_lock_streams` was asked to lock
    after the decisions (refusals to record, which no guessed statement writes: Round 28,
    #12); nothing was sent. The callers whose refusals they are go the ordinary way; the
    rest of a guessed group can be guessed again without them."""

    def __init__(
        self,
        message: str,
        *,
        taken_streams: frozenset[str] = frozenset(),
        taken_ids: frozenset[uuid.UUID] = frozenset(),
        refusal_streams: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(message)
        self.taken_streams = taken_streams
        self.taken_ids = taken_ids
        self.refusal_streams = refusal_streams


class UnitOfWork(Protocol):
    async def lock_streams(
        self,
        stream_ids: Sequence[str],
        *,
        shared: Sequence[str] = (),
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Lock the streams against other writers until commit; returns their versions.
        ``shared``: streams only read by the decision (a product's shelf entry), held against
        writers but not against other readers, so what was read cannot change under it
        (streams that do not exist are skipped). One global order over both: no deadlock.
        ``likely``: the version a stream will probably reach in this unit (a batch: its items
        for the stream), a hint only: a store may create a new stream at it, so that its write
        need not change the stream again (#12); the versions returned, and every stream's
        version when the unit ends, are what was written, whatever the hint."""

    async def try_lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Lock streams *without waiting*, after others were locked (out of the global order):
        returns their versions, or raises :class:`StreamsBusy` if one is locked by another
        transaction or does not exist yet (it is never created here). Because it never waits,
        it adds no edge to any wait-for cycle; meant for streams that only writers already
        holding another lock write (a subject's refusal stream: docs/intake.md)."""

    async def find_existing(
        self, event_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, StoredEvent]: ...

    async def load_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]: ...

    def stage(self, event: RecordedEvent, *, topic: str, submission_hash: bytes | None) -> None:
        """Queue an event and its outbox row. Its stream_version must follow the stream's."""

    def claim_ids(self, claims: Iterable[tuple[uuid.UUID, uuid.UUID, bool]]) -> None:
        """Claim event ids before the unit ends (#12, D-05, event store migration 011): each
        ``(id sent, id that must not be stored, exclusive)``: an acceptance under a sent id
        claims it shared, naming its refusal's id; a refusal of one exclusive, naming it.
        When the unit ends, after its writes, one of the named ids stored (by another writer
        meanwhile) fails it whole: :class:`RefusalRaced`. So a refusal and an acceptance of
        one id are never both recorded."""

    async def commit(self) -> list[StoredPosition]:
        """Write everything staged in one transaction; positions in staging order."""


class EventStore(Protocol):
    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[StoredEvent]: ...

    async def read_log(self, after: LogPosition, *, limit: int = 1000) -> list[LogRecord]:
        """The ordered log of every event, gap-safe: nothing that commits later can appear
        before ``after`` once it has been read past."""
        ...


class SharedTransaction(Protocol):
    """One transaction lent to several units of work in turn (group commit)."""

    async def lock_streams(self, stream_ids: Sequence[str], *, shared: Sequence[str] = ()) -> None:
        """Lock every stream the group will touch, once, in one global order."""

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> None:
        """Look up the group's event ids at once (after its locks); its units of work's
        ``find_existing`` answers from what was found and what the group wrote since."""

    def isolated(self, *, alone: bool = False) -> AbstractAsyncContextManager[None]:
        """A scope whose writes roll back alone if it raises (one caller's part). ``alone``:
        the transaction's only caller, without a savepoint of its own: if it raises, the
        transaction must be rolled back whole."""
        ...

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A unit of work inside the shared transaction: it fails (and rolls back) alone."""
        ...


@runtime_checkable
class GroupCommitStore(EventStore, Protocol):
    """A store whose writers can share one transaction and one commit."""

    def shared_transaction(self) -> AbstractAsyncContextManager[SharedTransaction]: ...


@runtime_checkable
class GuessingStore(Protocol):
    """A store that can write new streams' first events in one self-committing statement."""

    def guessing_unit_of_work(self) -> AbstractAsyncContextManager[GuessingUnitOfWork]:
        """A unit of work that takes every stream it is asked to lock for new (version 0, no
        events), decides nothing against the database, and writes with its one
        :meth:`~UnitOfWork.commit`: one statement, its own transaction, that creates those
        streams (no ``ON CONFLICT``: one that exists fails it whole, :class:`GuessWrong`),
        writes the events and their outbox rows and answers their positions. Anything else
        asked of it raises :class:`GuessWrong` before a statement is sent. A statement the
        server refuses for another reason than the guess (a deadlock, a value it cannot
        read) is raised as the server's error, nothing written (``sent`` false)."""
        ...


class GuessingUnitOfWork(UnitOfWork, Protocol):
    @property
    def sent(self) -> bool:
        """Its statement was sent and may have committed: its work must not run again."""
        ...

    def remember(self, streams: Mapping[str, tuple[int, uuid.UUID]]) -> None:
        """Streams to take at a remembered version ending with a remembered event id instead
        of for new: locked at that version, their write checks in the same statement that
        each still ends there (a stream that moved fails it whole, :class:`GuessWrong`)."""
        ...
