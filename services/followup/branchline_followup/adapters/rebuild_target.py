"""The PostgreSQL side of a blue/green rebuild (``application/rebuild.py`` ``RebuildTarget``):
a fresh schema ``fu_rebuild_<n>`` with empty copies of the live tables, one connection whose
``search_path`` writes it, and the swap (see :mod:`.pg_schemas` for the locks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import asyncpg
import orjson

from branchline_followup.adapters import client_journal, pg_schemas, read_models
from branchline_followup.adapters.console_read_models import (
    TIMELINE_INSERT,
    console_rows,
    timeline_row,
)
from branchline_followup.adapters.read_models import (
    APPLIED_INSERT,
    FACT_COLUMNS,
    VISIT_COLUMNS,
    applied_row,
    visit_row,
)
from branchline_followup.adapters.service_loop_facts import (
    CLOSURE_UPDATE,
    COMPLAINT_FACT_TYPES,
    complaint_columns,
    record_service_loop_facts,
)
from branchline_followup.adapters.unit_of_work import (
    PostgresFollowupUnitOfWork,
    _Activity,
    _Clients,
    _Holdings,
    _Journal,
    _Privacy,
    _Tasks,
    _Timers,
)
from branchline_followup.application.ports import JournaledEvent
from branchline_followup.application.rebuild_routes import (
    SHARED_WRITER,
    partition_of,
    partition_predicate,
)
from branchline_followup.domain import DurableTimer, FollowupTask
from branchline_followup.domain.records import ClientFacts, DueTimer
from branchline_followup.domain.suitability import Rating
from branchline_shared.events.catalogue import (
    ComplaintCorrectiveActionCompleted,
    ComplaintCorrectiveActionPlanned,
    ComplaintEvent,
    EventType,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.stored_documents import stored_envelope
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.faults import session_ended_unread
from branchline_shared.postgres.pool import PgConnection, PgPool, open_pool

log = logging.getLogger(__name__)

STORE_SOURCE = "followup"
RECENT_STORE_EVENTS = timedelta(minutes=10)
STORE_EVENTS_NOT_ON_KAFKA = """
SELECT e.event_id, e.global_position, e.envelope FROM es_events e
WHERE e.recorded_at >= $1
   OR EXISTS (SELECT 1 FROM es_outbox o
              WHERE o.event_id = e.event_id AND o.published_at IS NULL)
ORDER BY e.tx_id, e.global_position
"""
"""The swap's read of followup's store events recorded since ``$1`` or not published yet
(:meth:`PostgresRebuildTarget.store_events_not_on_kafka`). No index serves it: it reads the
whole store (``bench/profile_swap_read.py``: ≈ 0.25 s at 1,000,000 events, #12)."""


class SwapLockBusy(RuntimeError):
    """The swap lock could not be taken within the bounded attempts: live writers held it
    (a long transaction, or one stuck). Nothing was swapped: the live read models are
    untouched; the rebuilt schema (``fu_rebuild_<n>``) is dropped."""


class SwapAbandoned(RuntimeError):
    """The swap's transaction sat idle holding the swap lock too long and PostgreSQL ended it
    (``idle_in_transaction_session_timeout``): nothing was swapped."""


_ABSENT: Any = object()

_CLIENTS_UPSERT = (
    f"INSERT INTO fu_clients (client_id, {', '.join(FACT_COLUMNS)}) "  # noqa: S608 - fixed identifiers, bound values
    f"VALUES ($1, {', '.join(f'${i}' for i in range(2, len(FACT_COLUMNS) + 2))}) "
    f"ON CONFLICT (client_id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in FACT_COLUMNS)}, updated_at = now()"
)
""":func:`read_models.save_client`'s statement, for many clients at once."""

_CLOSURE_TYPES = frozenset(
    {EventType.CLIENT_ACCOUNT_CLOSED.value, EventType.CLIENT_ACCOUNT_REOPENED.value}
)
"""Events whose service-loop facts update the client's row in place
(:func:`~.service_loop_facts.record_service_loop_facts`: ``account_closure_reason``)."""


class _Recorder:
    """Takes what :mod:`.read_models` would send to write tasks and timers, to send it later
    (:meth:`_BulkWrites.write_tasks`)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append((sql, args))
        return ""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.calls.extend((sql, tuple(row)) for row in rows)


REMEMBERED_CLIENTS = 200_000
"""Beyond this many clients (or tasks, or client journal places) a rebuild stops remembering
every client (bounded memory): what it remembers is dropped after a batch is written, and a
client it does not remember is read."""

FIRST_ANALYZE = 1_000
"""Events written to the rebuild's schema before its tables are first analysed; then again
each time that count has grown :data:`ANALYZE_GROWTH` times (a bounded number of ANALYZEs:
at most 4 for 1,000,000 events, 5 for 10,000,000)."""

ANALYZE_GROWTH = 10

REMEMBERED_RATINGS = 200_000
"""Beyond this many product ratings a rebuild stops remembering them (bounded memory): they
are dropped after a batch is written and read from the rebuild's ``fu_product_ratings``."""

REMEMBERED_EVENTS = 200_000
"""Beyond this many applied events a rebuild stops remembering every event id (bounded memory
on a rebuild of millions of events): the ids are dropped after a batch is written, and an event
not remembered is looked up in the rebuild's ``fu_applied_events``."""


DEFERRED_INDEXES = frozenset(
    {
        "fu_applied_events_by_seq",
        "fu_applied_events_source",
        "fu_clients_by_branch",
        "fu_clients_by_rm",
        "fu_clients_stage_changes",
        "fu_complaints_by_receipt",
        "fu_corrective_actions_by_plan",
        "fu_privacy_to_shred",
        "fu_refusals_by_rm",
        "fu_refusals_by_rm_rule",
        "fu_refusals_by_rule",
        "fu_refusals_recent",
        "fu_renegotiations_by_time",
        "fu_staff_training_by_staff",
        "fu_surveys_by_answer",
        "fu_tasks_cancelled_by_due",
        "fu_tasks_closed_by_time",
        "fu_tasks_done_by_due",
        "fu_tasks_kind_by_status",
        "fu_tasks_open_by_due",
        "fu_tasks_owner_by_status",
        "fu_timers_due",
        "fu_visits_by_arrival",
        "fu_visits_by_start",
    }
)
"""Indexes of the live read models that a rebuild builds after its load, once per table,
instead of keeping them up row by row while it writes (a bulk load's, #12). Only indexes
nothing the load runs reads: those of the APIs, the console, the timer runner, the shredder,
the self-check's order step and the swap's due stage changes (built before the catch-up). Kept
while loading: every primary key (``ON CONFLICT``, the applied record), the client journal's
order (the in-order check, a re-projection), the by-client indexes a re-projection's ``DELETE``
s read (:data:`~.client_journal.CLEAR_CLIENT`), the tasks by source (a creation's read-ahead),
the timers by task and client (``SYNC_TIMERS``), the holdings by product (a re-rating) and the
refusals by client (console migration 004's trigger on a client's RM change)."""


_Mark = tuple[int, list[tuple[Any, ...]], int, int, int, int, int]


class RowCopy:
    """A table's rows written by ``COPY`` (:func:`copy_rows`), or, if one collides with a row
    of the table or of the same copy, by ``insert`` (``ON CONFLICT DO NOTHING``)."""

    def __init__(self, table: str, columns: tuple[str, ...], insert: str) -> None:
        self.table = table
        self.columns = columns
        self.insert = insert


APPLIED_COPY = RowCopy(
    "fu_applied_events", ("event_id", "type", "source", "global_position"), APPLIED_INSERT
)
TIMELINE_COPY = RowCopy(
    "fu_client_timeline",
    ("client_id", "occurred_at", "event_id", "type", "branch_id", "actor_id", "actor_role"),
    TIMELINE_INSERT,
)
JOURNAL_COPY = RowCopy(
    "fu_client_events",
    ("event_id", "client_id", "source", "global_position", "recorded_ms", "envelope"),
    client_journal.KEEP_ROW,
)


_JSONB_VERSION = b"\x01"
"""The first byte of jsonb's binary format (the only version PostgreSQL writes and reads)."""


async def binary_jsonb(conn: PgConnection) -> None:
    """jsonb in its binary format on ``conn``, the same Python values (orjson) as the pool's
    text codec: ``COPY`` (:func:`copy_rows`) sends binary only (the journal's envelopes)."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: _JSONB_VERSION + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def copy_rows(conn: PgConnection, copy: RowCopy, rows: list[tuple[Any, ...]]) -> None:
    """``rows`` (the arguments of ``copy.insert``) by one ``COPY`` (#12 round 21: the
    transaction-end inserts of the applied record, the timeline and the journal cost the
    backend ≈ 27 µs and the process ≈ 9 µs per event as ``executemany``, a statement executed
    per row). The rebuild writes each of these rows once, so a conflict should not occur; if
    one does (a key already written, or twice in ``rows``), the copy is rolled back to its
    savepoint and the rows are inserted as before, ``ON CONFLICT DO NOTHING``: the same rows
    kept either way, the first of a key."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(copy.table, records=rows, columns=copy.columns)
    except asyncpg.UniqueViolationError:
        await conn.executemany(copy.insert, rows)


class _BulkWrites:
    """What a rebuild keeps in memory instead of reading or writing it row by row (#12).

    Only the rebuild writes its schema, and it starts empty: what the rebuild wrote is all
    there is, so it can answer from memory and write at the end of each transaction.

    - The applied-event record and the console timeline, written once per transaction
      (``executemany``, in the order the events were applied); an event seen again (a relay
      that published twice) is found in :attr:`applied`, as ``ON CONFLICT`` would have.
    - Every client's facts, read from here (a client not here does not exist) and written
      once per transaction for the clients that changed (:meth:`flush`), before anything
      reads the table (the swap's due stage changes) or changes the row in place.
    - Every client's open tasks, read from here; the task rows and their timers are written
      once per transaction too, in the order they were saved (:class:`_RebuildTasks`,
      :class:`_RebuildTimers`), and before any other statement reads or changes those tables
      (:meth:`write_tasks`).
    - The client journal's in-order check (ADR-0014) from the latest place kept per client
      and store, its rows written once per transaction, and before anything reads them (a
      re-projection).
    - The client page's consents and assessment, the visits, surveys and business events,
      sent with the task writes (:class:`_RebuildActivity`).
    - Every product's ratings (D-13 / D-15), read from here (:class:`_RebuildHoldings`: a
      sale asks for its product's, #12) and written at once as before; past
      :data:`REMEMBERED_RATINGS` they are forgotten and read (:attr:`all_ratings` false).

    A savepoint or transaction that rolls back takes back what it changed here: an undo log
    (:meth:`mark` / :meth:`rollback_to`); rows written inside it (a flush before a read) are
    written again. A client's re-projection (ADR-0014), which deletes what the client's events
    wrote before applying them again, forgets the same here (:meth:`clear_client`). Past
    :data:`REMEMBERED_CLIENTS` clients, facts and open tasks are forgotten after a transaction
    and read again when needed (:attr:`complete` false); so are the tasks' clients and the
    journal's latest places. Past :data:`REMEMBERED_EVENTS` applied events, their ids are
    forgotten and looked up in the applied record (:attr:`all_applied` false). What is forgotten
    is always read again from the rebuild's own schema, never taken as absent: everything
    forgotten was written and committed first (:meth:`committed`)."""

    def __init__(self, part: int = 0, parts: int = 1) -> None:
        self.part = part
        self.parts = parts
        """This process's share of a partitioned rebuild (:mod:`~..rebuild_routes`): the
        clients :func:`partition_of` gives ``part``; 0 of 1, every client."""
        self.writes_shared = part == SHARED_WRITER
        """Whether this process writes the rows of no client (the shelf's and staff events'
        applied record, ratings, staff rows); the others apply those events to their own
        clients and memory only."""
        self._not_written: set[uuid.UUID] = set()
        """Events of no client marked applied here but recorded by the shared writer (kept
        when the applied ids are forgotten: the record may not hold them yet)."""
        self.applied: set[uuid.UUID] = set()
        self.all_applied = True
        """Every event the rebuild applied is in :attr:`applied` (else: read the record)."""
        self._absent: set[uuid.UUID] = set()
        """Looked up in this transaction and not in the applied record (:meth:`learn_applied`)."""
        self._read: set[tuple[str, str]] = set()
        """(client, store) pairs whose place was read in this transaction (:meth:`learn_places`)."""
        self._applied_rows: list[tuple[Any, ...]] = []
        self.written = 0
        """Applied events written to the schema so far (:meth:`flush`), rolled back or not."""
        self._timeline_rows: list[tuple[Any, ...]] = []
        self.facts: dict[str, ClientFacts | None] = {}
        self.changed: set[str] = set()
        """Clients whose facts were saved since the last transaction committed (extra ones,
        after a rollback, are written again with the values the row already holds)."""
        self.open: dict[str, dict[uuid.UUID, FollowupTask]] = {}
        self.task_clients: dict[uuid.UUID, str] = {}
        """Every task the rebuild wrote (some since deleted by a re-projection): its client."""
        self.complete = True
        """Every client's facts, open tasks and journal places and every task's client are
        here (a client absent has none, a task absent was never written)."""
        self.latest: dict[tuple[str, str], tuple[int, int]] = {}
        """The latest place (recorded ms, global position) kept per client and store."""
        self._journal_rows: list[tuple[Any, ...]] = []
        self._journal_written = 0
        self._writes = _Recorder()
        """Task and timer statements not sent yet (:meth:`write_tasks`)."""
        self._writes_sent = 0
        self.ratings: dict[str, tuple[Rating, ...]] = {}
        """Every product's ratings the rebuild wrote to ``fu_product_ratings`` (the table
        starts empty, and a re-projection does not clear it)."""
        self.all_ratings = True
        """Every rating written is in :attr:`ratings` (else: read the table)."""
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []

    def _set(self, store: dict[Any, Any], key: Any, value: Any) -> None:
        self._undo.append((store, key, store.get(key, _ABSENT)))
        store[key] = value

    async def learn_applied(self, conn: PgConnection, event_ids: Iterable[uuid.UUID]) -> None:
        """While applied ids are forgotten (:attr:`all_applied` false): those of ``event_ids``
        not known either way are looked up in the applied record, in one statement; found,
        they join :attr:`applied` (committed: no rollback takes them back), not found, they
        are known absent until the transaction commits (what is not committed yet is always
        remembered)."""
        if self.all_applied:
            return
        unknown = [
            i for i in dict.fromkeys(event_ids) if i not in self.applied and i not in self._absent
        ]
        if not unknown:
            return
        rows = await conn.fetch(
            "SELECT event_id FROM fu_applied_events WHERE event_id = ANY($1::uuid[])", unknown
        )
        found = {r[0] for r in rows}
        self.applied.update(found)
        self._absent.update(i for i in unknown if i not in found)

    async def learn_places(self, conn: PgConnection, keys: Iterable[tuple[str, str]]) -> None:
        """While places are forgotten (:attr:`complete` false): the latest place of each
        (client, store) not known either way, read from the journal in one statement; the
        journal holds every row kept before this transaction (one kept in it is
        remembered)."""
        if self.complete:
            return
        unknown = [k for k in dict.fromkeys(keys) if k not in self.latest and k not in self._read]
        if not unknown:
            return
        self._read.update(unknown)
        # not through the undo log: a rollback must not forget what the journal holds (the
        # pair is not read again in this transaction)
        self.latest.update(await client_journal.latest_places(conn, unknown))

    def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        if event.event_id in self.applied:
            return False
        self.applied.add(event.event_id)
        self._applied_rows.append(applied_row(event, position))
        if event.client_id is None and not self.writes_shared:
            self._not_written.add(event.event_id)  # left out at the flush
        return True

    def owns(self, client_id: str) -> bool:
        return self.parts <= 1 or partition_of(client_id, self.parts) == self.part

    def timeline(self, event: RecordedEvent, client_id: str) -> None:
        self._timeline_rows.append(timeline_row(event, client_id))

    def save_facts(self, facts: ClientFacts) -> None:
        self._set(self.facts, facts.client_id, _copied(facts))
        self.changed.add(facts.client_id)

    def remember_facts(self, client_id: str, facts: ClientFacts | None) -> None:
        self._set(self.facts, client_id, facts)

    def set_open(self, client_id: str, tasks: dict[uuid.UUID, FollowupTask]) -> None:
        self._set(self.open, client_id, tasks)

    def remember_rating(self, product_id: str, rating: Rating) -> None:
        """A rating written (``ON CONFLICT DO NOTHING``: an event's rating kept once, as
        first written), as the table's row reads back (its instant in UTC)."""
        known = self.ratings.get(product_id, ())
        if any(r.event_id == rating.event_id for r in known):
            return
        row = Rating(rating.event_id, rating.risk, rating.effective_at.astimezone(UTC))
        self._set(self.ratings, product_id, (*known, row))

    async def keep(
        self, conn: PgConnection, event: RecordedEvent, position: SourcePosition | None
    ) -> bool:
        """:func:`client_journal.keep` from memory: the row is written with the others. A
        place forgotten (:attr:`complete` false) is read from the journal, which holds every
        row kept before this transaction (a row kept in it is remembered)."""
        if event.client_id is None:
            return False
        row = client_journal.journal_row(event, position)
        _, client_id, source, global_position, ms, _ = row
        if global_position is not None:
            await self.learn_places(conn, [(client_id, source)])
        self._journal_rows.append(row)
        if global_position is None:
            return False  # its place unknown: never found late (arrives_late)
        place = (ms, global_position)
        latest = self.latest.get((client_id, source))
        if latest is not None and latest > place:
            return True
        self._set(self.latest, (client_id, source), place)
        return False

    def mark(self) -> _Mark:
        # the timeline as a copy: a re-projection removes rows from its middle
        return (
            len(self._applied_rows),
            list(self._timeline_rows),
            len(self._undo),
            len(self._journal_rows),
            self._journal_written,
            len(self._writes.calls),
            self._writes_sent,
        )

    def rollback_to(self, mark: _Mark) -> None:
        applied, timeline, undo, journal, journal_written, writes, writes_sent = mark
        for row in self._applied_rows[applied:]:
            self.applied.discard(row[0])
        del self._applied_rows[applied:]
        self._timeline_rows = list(timeline)
        while len(self._undo) > undo:
            store, key, previous = self._undo.pop()
            if previous is _ABSENT:
                store.pop(key, None)
            else:
                store[key] = previous
        del self._journal_rows[journal:]
        self._journal_written = journal_written  # what was written since is rolled back too
        del self._writes.calls[writes:]
        self._writes_sent = writes_sent

    def clear_client(self, client_id: str) -> None:
        """What a re-projection's DELETEs remove (the tasks: :class:`_RebuildJournal`)."""
        self._timeline_rows = [row for row in self._timeline_rows if row[0] != client_id]
        self.remember_facts(client_id, None)

    async def write_journal(self, conn: PgConnection) -> None:
        """The journal rows not written yet (before a statement reads the journal)."""
        if len(self._journal_rows) > self._journal_written:
            await copy_rows(
                conn,
                JOURNAL_COPY,
                self._journal_rows[self._journal_written :],
            )
            self._journal_written = len(self._journal_rows)

    def defer(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """Statements sent with the task writes (:meth:`write_tasks`)."""
        self._writes.calls.extend(statements)

    @property
    def task_writes(self) -> PgConnection:
        """Where task and timer writes go to be sent by :meth:`write_tasks`."""
        return cast(PgConnection, self._writes)

    async def write_tasks(self, conn: PgConnection, *, facts_written: bool = False) -> None:
        """The task and timer statements not sent yet (and those :meth:`defer`red: the client
        page's, visits, surveys, business events, complaints, corrective actions,
        renegotiations, closures), before a statement reads or changes those tables: one
        ``executemany`` per statement text, each in the order they were made. Each table's
        rows are apart from the others' (no statement of one reads another), and each table's
        statements that depend on order are one text (the visits': one upsert naming the
        columns it sets), so only the order within each text matters. A closure's ``UPDATE``
        of ``fu_clients`` needs its client's row as remembered: the facts of its clients
        saved in this transaction are written first, unless ``facts_written`` (the flush has
        just written every changed client's)."""
        by_text: dict[str, list[tuple[Any, ...]]] = {}
        for sql, args in self._writes.calls[self._writes_sent :]:
            by_text.setdefault(sql, []).append(args)
        self._writes_sent = len(self._writes.calls)
        for sql, rows in by_text.items():
            if sql == CLOSURE_UPDATE and not facts_written:
                await self.write_facts(conn, {row[0] for row in rows} & self.changed)
            await conn.executemany(sql, rows)

    async def write_facts(self, conn: PgConnection, client_ids: Iterable[str]) -> None:
        """The facts of ``client_ids`` as remembered (before a statement reads or changes the
        rows); they stay to be written at the end too (a savepoint may roll this back)."""
        rows = [
            read_models.client_row(facts)
            for client_id in sorted(client_ids)
            if (facts := self.facts.get(client_id)) is not None
        ]
        if rows:
            await conn.executemany(_CLIENTS_UPSERT, rows)

    async def flush(self, conn: PgConnection) -> None:
        """Within the transaction that applied them, before it commits."""
        rows = self._applied_rows
        if self._not_written:  # another process records these (a partitioned rebuild)
            rows = [row for row in rows if row[0] not in self._not_written]
        self.written += len(rows)
        if rows:
            await copy_rows(conn, APPLIED_COPY, rows)
        if self._timeline_rows:
            await copy_rows(conn, TIMELINE_COPY, self._timeline_rows)
        await self.write_journal(conn)
        await self.write_facts(conn, self.changed)
        await self.write_tasks(conn, facts_written=True)
        self._applied_rows.clear()
        self._timeline_rows.clear()

    def committed(self) -> None:
        """The transaction that wrote :meth:`flush`'s rows committed."""
        self.changed.clear()
        self._undo.clear()
        self._journal_rows.clear()
        self._journal_written = 0
        self._writes.calls.clear()
        self._writes_sent = 0
        self._absent.clear()
        self._read.clear()
        # All written and committed by now: what is dropped is read back from the schema.
        if max(len(self.facts), len(self.task_clients), len(self.latest)) > REMEMBERED_CLIENTS:
            self.facts.clear()
            self.open.clear()
            self.task_clients.clear()
            self.latest.clear()
            self.complete = False
        if len(self.applied) > REMEMBERED_EVENTS:
            self.applied.clear()
            self.applied.update(self._not_written)
            self.all_applied = False
        if not self.writes_shared:
            return  # its ratings are not in the table yet: all kept (one per shelf event)
        if sum(len(r) for r in self.ratings.values()) > REMEMBERED_RATINGS:
            self.ratings.clear()
            self.all_ratings = False

    def forget_all(self) -> None:
        """Everything remembered forgotten, to be read back from the schema (after other
        processes wrote it: a partitioned rebuild's load, read by its catch-up and swap)."""
        self.facts.clear()
        self.open.clear()
        self.task_clients.clear()
        self.latest.clear()
        self.complete = False
        self.applied.clear()
        self.all_applied = False
        self.ratings.clear()
        self.all_ratings = False


def _copied(facts: ClientFacts) -> ClientFacts:
    """``copy.copy(facts)``: a new instance of its class holding the same field values (a
    plain dataclass: its fields are its instance dictionary), without ``copy``'s generic
    ``__reduce_ex__`` round (#12: about a quarter of its cost; two per applied event)."""
    copied = object.__new__(type(facts))
    copied.__dict__.update(facts.__dict__)
    return copied


class _RebuildClients(_Clients):
    """The clients' facts from :class:`_BulkWrites` (copies handed out and kept: the caller
    may change what it holds)."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def get(self, client_id: str) -> ClientFacts | None:
        bulk = self._bulk
        if client_id in bulk.facts:
            facts = bulk.facts[client_id]
        elif bulk.complete:
            return None
        else:
            facts = await read_models.fetch_client(self._conn, client_id)
            bulk.remember_facts(client_id, facts)
        # a shallow copy, as ``dataclasses.replace`` made (#12: a tenth of the cost)
        return None if facts is None else _copied(facts)

    async def save(self, facts: ClientFacts) -> None:
        self._bulk.save_facts(facts)

    def forget(self, client_id: str) -> None:
        return None  # what is remembered is what the table holds (or will, at the flush)

    async def claim_due_stage_changes(self, now: datetime, limit: int) -> list[str]:
        await self._bulk.write_facts(self._conn, self._bulk.changed)
        return await super().claim_due_stage_changes(now, limit)

    async def count_due_stage_changes(self, now: datetime) -> int:
        await self._bulk.write_facts(self._conn, self._bulk.changed)
        return await super().count_due_stage_changes(now)

    async def dead_letter_stage_change(self, client_id: str, reason: str) -> None:
        await self._bulk.write_facts(self._conn, [client_id])
        await read_models.dead_letter_stage_change(self._conn, client_id, reason)
        self._bulk.remember_facts(client_id, await read_models.fetch_client(self._conn, client_id))


class _RebuildTasks(_Tasks):
    """The clients' open tasks from :class:`_BulkWrites`; task rows written with the others
    at the end of the transaction, sent first whenever a statement reads or changes them."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def get(self, task_id: uuid.UUID) -> FollowupTask | None:
        client_id = self._bulk.task_clients.get(task_id)
        if client_id is None and self._bulk.complete:
            return None  # never written by the rebuild
        if client_id is not None and (task := self._bulk.open.get(client_id, {}).get(task_id)):
            return task
        await self._bulk.write_tasks(self._conn)
        return await super().get(task_id)

    async def load(self, task_ids: Sequence[uuid.UUID]) -> None:
        return None  # :meth:`get` answers from memory, or reads what it does not know

    async def load_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> None:
        return None  # as :meth:`load`

    async def get_caused(self, task_id: uuid.UUID, caused_by: uuid.UUID) -> FollowupTask | None:
        return await self.get(task_id)

    async def open_of(self, client_id: str) -> list[FollowupTask]:
        bulk = self._bulk
        if client_id not in bulk.open:
            if bulk.complete:
                return []
            await self.reread(client_id)
        # the table's order (ORDER BY opened_at, id)
        return sorted(bulk.open[client_id].values(), key=lambda t: (t.opened_at, t.id))

    async def reread(self, client_id: str) -> None:
        await self._bulk.write_tasks(self._conn)
        tasks = await read_models.open_tasks_of(self._conn, client_id)
        self._bulk.set_open(client_id, {t.id: t for t in tasks})

    async def save(self, tasks: Sequence[FollowupTask]) -> None:
        bulk = self._bulk
        await read_models.save_tasks(bulk.task_writes, tasks)
        by_client: dict[str, dict[uuid.UUID, FollowupTask]] = {}
        for task in tasks:
            bulk.task_clients[task.id] = task.client_id
            if task.client_id not in by_client:
                if task.client_id not in bulk.open and not bulk.complete:
                    await self.reread(task.client_id)
                by_client[task.client_id] = dict(bulk.open.get(task.client_id, {}))
            if task.is_open:
                by_client[task.client_id][task.id] = task
            else:
                by_client[task.client_id].pop(task.id, None)
        for client_id, open_tasks in by_client.items():
            bulk.set_open(client_id, open_tasks)

    async def set_outcome(self, task_id: uuid.UUID, outcome: str) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().set_outcome(task_id, outcome)

    async def set_overdue(self, task_id: uuid.UUID, at: datetime) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().set_overdue(task_id, at)

    async def set_escalated(self, task_id: uuid.UUID, to: str) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().set_escalated(task_id, to)
        client_id = self._bulk.task_clients.get(task_id)
        if client_id is None and not self._bulk.complete:
            # forgotten: its client is read from the row (the task may be open in memory)
            task = await super().get(task_id)
            client_id = None if task is None else task.client_id
        if client_id is not None and task_id in self._bulk.open.get(client_id, {}):
            await self.reread(client_id)  # an open task's escalation is one of its columns


class _RebuildTimers(_Timers):
    """Timer syncs written with the tasks at the end of the transaction; every other timer
    statement sends what is pending first."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def sync(self, task: FollowupTask, wanted: Sequence[DurableTimer]) -> None:
        await read_models.sync_timers(self._bulk.task_writes, [(task, wanted)])

    async def sync_all(
        self, changes: Sequence[tuple[FollowupTask, Sequence[DurableTimer]]]
    ) -> None:
        await read_models.sync_timers(self._bulk.task_writes, changes)

    async def record_fired(
        self,
        *,
        timer_id: uuid.UUID,
        task_id: uuid.UUID,
        client_id: str,
        kind: str,
        fire_at: datetime,
        event_id: uuid.UUID,
    ) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().record_fired(
            timer_id=timer_id,
            task_id=task_id,
            client_id=client_id,
            kind=kind,
            fire_at=fire_at,
            event_id=event_id,
        )

    async def mark_fired(
        self, task_id: uuid.UUID, kind: str, at: datetime, event_id: uuid.UUID | None
    ) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().mark_fired(task_id, kind, at, event_id)

    async def claim_due(self, now: datetime, limit: int) -> list[DueTimer]:
        await self._bulk.write_tasks(self._conn)
        return await super().claim_due(now, limit)

    async def count_due(self, now: datetime) -> int:
        await self._bulk.write_tasks(self._conn)
        return await super().count_due(now)

    async def consume(self, timer_id: uuid.UUID, at: datetime) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().consume(timer_id, at)

    async def dead_letter(self, timer_id: uuid.UUID, at: datetime, reason: str) -> None:
        await self._bulk.write_tasks(self._conn)
        await super().dead_letter(timer_id, at, reason)

    async def dead(self) -> list[tuple[uuid.UUID, str]]:
        await self._bulk.write_tasks(self._conn)
        return await super().dead()


class _RebuildHoldings(_Holdings):
    """A product's ratings from :class:`_BulkWrites` (#12: a round trip per sale was ≈ 6 %
    of a rebuild's wall time); each rating is written at once, as before, so the table holds
    every one (what is forgotten past the bound is read from it)."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def record_rating(self, product_id: str, rating: Rating) -> None:
        if self._bulk.writes_shared:  # else remembered only (see _BulkWrites.committed)
            await super().record_rating(product_id, rating)
        if self._bulk.all_ratings:
            self._bulk.remember_rating(product_id, rating)

    async def rerate(self, product_id: str, product_risk: str) -> list[tuple[str, datetime]]:
        bulk = self._bulk
        if bulk.parts <= 1:
            return await super().rerate(product_id, product_risk)
        # a partitioned rebuild: this process's holders only (each process re-rates its own,
        # in its clients' log order)
        rows = await self._conn.fetch(
            "UPDATE fu_holdings SET product_risk = $2 WHERE product_id = $1 AND "  # noqa: S608 - fixed text, bound values
            + partition_predicate("client_id", "$3", "$4")
            + " RETURNING client_id, since",
            product_id,
            product_risk,
            bulk.parts,
            bulk.part,
        )
        return sorted((r["client_id"], r["since"]) for r in rows)

    async def ratings_of(self, product_id: str) -> list[Rating]:
        if not self._bulk.all_ratings:
            return await super().ratings_of(product_id)
        # the table's rows, in no order (as its SELECT, which has no ORDER BY)
        return list(self._bulk.ratings.get(product_id, ()))


class _RebuildActivity(_Activity):
    """The client page's consent and assessment rows, the visits, surveys and business events
    sent with the task writes (:meth:`_BulkWrites.write_tasks`, #12: they were most of the
    rebuild's remaining statements, about 0.45 of 0.56 per event). Nothing the projection
    reads while applying events reads those tables; a re-projection's DELETEs send them first
    (:meth:`_RebuildJournal.clear_read_models`), and a per-event savepoint sends them inside
    it (a poison row still fails its own event). A complaint's writes (its receipt, its
    service-loop facts, its steps) are one statement text, :data:`_COMPLAINT_WRITE`, so they
    are sent with the others in the order they were made (#12); so are a corrective action's
    (its plan, its completion: :data:`_CORRECTIVE_ACTION_WRITE`), the renegotiations (a row of
    their own each) and a closure's or reopening's ``UPDATE`` of the client's row (one text,
    in order; its row written first, :meth:`_BulkWrites.write_tasks`)."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def record_refusal(self, event: Decoded) -> None:
        if event.envelope.client_id is None and not self._bulk.writes_shared:
            return  # a shelf or staff event's: the shared writer's (a partitioned rebuild)
        await super().record_refusal(event)

    async def record_staff(self, staff_id: str, branch_id: str | None) -> None:
        if self._bulk.writes_shared:
            await super().record_staff(staff_id, branch_id)

    async def record_training(
        self, event: Decoded, staff_id: str, hours: Decimal, completed_at: datetime
    ) -> None:
        if self._bulk.writes_shared:
            await super().record_training(event, staff_id, hours, completed_at)

    async def record_console(self, event: Decoded, client_id: str) -> None:
        self._bulk.timeline(event.envelope, client_id)
        # each upsert keeps the later instant; rows of one statement stay in order
        self._bulk.defer(console_rows(event, client_id))

    async def record_visit(self, event: Decoded, rm_id: str | None, **columns: Any) -> None:
        self._bulk.defer([(_VISIT_UPSERT, _visit_row(event, rm_id, columns))])

    async def record_survey(
        self,
        event: Decoded,
        rm_id: str | None,
        visit_id: str | None,
        scores: dict[str, float],
    ) -> None:
        await read_models.record_survey(self._bulk.task_writes, event, rm_id, visit_id, scores)

    async def record_complaint_received(
        self, event: Decoded, rm_id: str | None, severity: str, topic: str | None
    ) -> None:
        self._bulk.defer([_complaint_received_row(event, rm_id, severity, topic)])

    async def record_complaint_step(self, event: Decoded, status: str, **columns: Any) -> None:
        self._bulk.defer([_complaint_update_row(event, {"status": status, **columns})])

    async def record_service_loop_facts(self, event: Decoded, rm_id: str | None) -> None:
        complaint = (
            complaint_columns(event) if event.envelope.type in COMPLAINT_FACT_TYPES else None
        )
        if complaint is not None:  # an UPDATE of the complaint's row: with its other writes
            self._bulk.defer([_complaint_update_row(event, complaint[1], complaint[0])])
            return
        kind = event.envelope.type
        if kind in _OWN_ROW_TYPES:  # an insert of its own row (event id): deferred
            await record_service_loop_facts(self._bulk.task_writes, event, rm_id)
            return
        if kind in _CORRECTIVE_ACTION_TYPES:
            self._bulk.defer([_corrective_action_row(event)])
            return
        client_id = event.envelope.client_id
        if kind in _CLOSURE_TYPES and client_id is not None:
            bulk = self._bulk
            if client_id in bulk.facts or bulk.complete:
                if bulk.facts.get(client_id) is None:
                    return  # no row: the live UPDATE changes nothing (a later one must not)
                # the row exists now, and stays until a re-projection's DELETE, which sends
                # what is deferred first: deferred with the other writes, in order
                await record_service_loop_facts(bulk.task_writes, event, rm_id)
                return
            # forgotten (past the bound): whether it has a row is read as before
            await bulk.write_facts(self._conn, [client_id])
        await super().record_service_loop_facts(event, rm_id)


_COMPLAINT_SET = (
    ("status", "text"),
    ("owner_id", "text"),
    ("acknowledged_at", "timestamptz"),
    ("resolved_at", "timestamptz"),
    ("confirmed_at", "timestamptz"),
    ("satisfied", "boolean"),
    ("closed_at", "timestamptz"),
    ("problem", "text"),
    ("product_id", "text"),
    ("product_category", "text"),
    ("complex_case", "boolean"),
    ("root_cause", "text"),
)
"""The ``fu_complaints`` columns an ``UPDATE`` of a complaint sets (a step's:
:func:`read_models.record_complaint_step`; the service-loop facts':
:func:`~.service_loop_facts.complaint_columns`), and their types."""

_COMPLAINT_NAMES = 9
"""The parameter naming the columns an update sets (:data:`_COMPLAINT_WRITE`)."""

_COMPLAINT_WRITE = (
    "WITH received AS ("  # noqa: S608 - fixed identifiers, bound values
    "INSERT INTO fu_complaints (client_id, complaint_id, branch_id, rm_id, severity, topic, "
    "received_at) SELECT $1::text, $2::text, $4::text, $5::text, $6::text, $7::text, "
    "$8::timestamptz WHERE $3::boolean "
    "ON CONFLICT (client_id, complaint_id) DO UPDATE "
    "SET severity = EXCLUDED.severity, topic = EXCLUDED.topic) "
    "UPDATE fu_complaints SET "
    + ", ".join(
        f"{c} = CASE WHEN ${_COMPLAINT_NAMES}::text[] @> ARRAY['{c}'] "
        f"THEN ${_COMPLAINT_NAMES + 1 + i}::{t} ELSE fu_complaints.{c} END"
        for i, (c, t) in enumerate(_COMPLAINT_SET)
    )
    + " WHERE NOT $3::boolean AND client_id = $1 AND complaint_id = $2"
)
"""A complaint's writes as one statement text (#12), so that a rebuild sends them all in one
``executemany`` per batch, in the order they were made (a step's ``UPDATE`` changes nothing
before its receipt, and a later step sets the status over an earlier one: their order
matters; rows of one text keep theirs). ``$3`` chooses: true, the receipt's upsert
(:func:`read_models.record_complaint_received`: ``$4``..``$8``); false, an ``UPDATE`` of the
columns named in ``$9`` (the others keep what the row holds), as
:func:`read_models.record_complaint_step` and the service-loop facts' ``UPDATE`` do. Only one
of the two parts changes a row (a ``WITH`` part and the ``UPDATE`` would otherwise both see the
row as it was before the statement)."""


def _complaint_received_row(
    event: Decoded, rm_id: str | None, severity: str, topic: str | None
) -> tuple[str, tuple[Any, ...]]:
    envelope = event.envelope
    return _COMPLAINT_WRITE, (
        envelope.client_id,
        payload_as(event, ComplaintEvent).complaint_id,
        True,
        envelope.branch_id,
        rm_id,
        severity,
        topic,
        envelope.occurred_at,
        [],
        *(None for _ in _COMPLAINT_SET),
    )


def _complaint_update_row(
    event: Decoded, columns: dict[str, Any], complaint_id: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    unknown = columns.keys() - _COMPLAINT_SET_NAMES
    if unknown:
        raise ValueError(f"not a complaint column: {sorted(unknown)}")
    return _COMPLAINT_WRITE, (
        event.envelope.client_id,
        payload_as(event, ComplaintEvent).complaint_id if complaint_id is None else complaint_id,
        False,
        None,
        None,
        None,
        None,
        None,
        list(columns),
        *(columns.get(c) for c, _ in _COMPLAINT_SET),
    )


_COMPLAINT_SET_NAMES = frozenset(c for c, _ in _COMPLAINT_SET)


_VISIT_UPSERT = (
    "INSERT INTO fu_visits (client_id, visit_id, branch_id, rm_id, "  # noqa: S608 - fixed identifiers, bound values
    f"{', '.join(VISIT_COLUMNS)}) VALUES ($1, $2, $3, $4, "
    f"{', '.join(f'${i}' for i in range(5, 5 + len(VISIT_COLUMNS)))}) "
    "ON CONFLICT (client_id, visit_id) DO UPDATE SET "
    "branch_id = COALESCE(fu_visits.branch_id, EXCLUDED.branch_id), "
    "rm_id = COALESCE(fu_visits.rm_id, EXCLUDED.rm_id), "
    + ", ".join(
        f"{c} = CASE WHEN ${5 + len(VISIT_COLUMNS)}::text[] @> ARRAY['{c}'] "
        f"THEN EXCLUDED.{c} ELSE fu_visits.{c} END"
        for c in VISIT_COLUMNS
    )
)
""":func:`read_models.record_visit`'s upserts as one statement (one text: sent in bulk, the
visits' order kept): the columns it sets are named in the last parameter, the others keep
what the row holds (a new row: NULL, the columns' default)."""


def _visit_row(event: Decoded, rm_id: str | None, columns: dict[str, Any]) -> tuple[Any, ...]:
    return (*visit_row(event, rm_id, columns), list(columns))


_OWN_ROW_TYPES = frozenset(
    {
        EventType.VISIT_BUSINESS_HANDLED.value,
        EventType.PRODUCT_SOLD.value,
        EventType.COMPLAINT_PROMISE_RENEGOTIATED.value,
        EventType.CONSULTATION_PROMISE_RENEGOTIATED.value,
    }
)
"""Events whose service-loop fact is an insert of a row of their own (``fu_business_events``,
``fu_renegotiations``: keyed by the event id, ``ON CONFLICT DO NOTHING``): no other write
changes it, so their order does not matter."""

_CORRECTIVE_ACTION_TYPES = frozenset(
    {
        EventType.COMPLAINT_CORRECTIVE_ACTION_PLANNED.value,
        EventType.COMPLAINT_CORRECTIVE_ACTION_COMPLETED.value,
    }
)

_CORRECTIVE_ACTION_WRITE = (
    "WITH planned AS ("
    "INSERT INTO fu_corrective_actions (client_id, complaint_id, action_id, branch_id, "
    "root_cause, action_kind, owner_id, planned_at, due_at) "
    "SELECT $1::text, $2::text, $3::text, $5::text, $6::text, $7::text, $8::text, "
    "$9::timestamptz, $10::timestamptz WHERE $4::boolean ON CONFLICT DO NOTHING) "
    "UPDATE fu_corrective_actions SET completed_at = COALESCE(completed_at, $9::timestamptz) "
    "WHERE NOT $4::boolean AND client_id = $1 AND complaint_id = $2 AND action_id = $3"
)
"""A corrective action's writes (D-17) as one statement text (#12), as the live
:func:`~.service_loop_facts.record_service_loop_facts` sends them: ``$4`` true, the plan's
insert (``ON CONFLICT DO NOTHING``: the first plan kept); false, the completion's ``UPDATE``
(the first completion's instant kept, ``$9``). One text, so a rebuild's ``executemany`` keeps
their order: a completion ahead of its plan changes nothing, live or rebuilt. Only one of the
two parts changes a row per execution (the ``UPDATE`` does not see the ``WITH`` part's row)."""


def _corrective_action_row(event: Decoded) -> tuple[str, tuple[Any, ...]]:
    envelope = event.envelope
    payload = event.payload
    if isinstance(payload, ComplaintCorrectiveActionPlanned):
        return _CORRECTIVE_ACTION_WRITE, (
            envelope.client_id,
            payload.complaint_id,
            payload.action_id,
            True,
            envelope.branch_id,
            payload.root_cause.value,
            payload.action_kind.value,
            payload.owner_id,
            envelope.occurred_at,
            payload.due_at,
        )
    completed = payload_as(event, ComplaintCorrectiveActionCompleted)
    return _CORRECTIVE_ACTION_WRITE, (
        envelope.client_id,
        completed.complaint_id,
        completed.action_id,
        False,
        None,
        None,
        None,
        None,
        envelope.occurred_at,
        None,
    )


class _RebuildJournal(_Journal):
    def __init__(self, conn: PgConnection, bulk: _BulkWrites, tasks: _RebuildTasks) -> None:
        super().__init__(conn)
        self._bulk = bulk
        self._open_tasks = tasks

    async def keep(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        return await self._bulk.keep(self._conn, event, position)

    async def of_client(self, client_id: str) -> list[JournaledEvent]:
        await self._bulk.write_journal(self._conn)
        return await super().of_client(client_id)

    async def clear_read_models(self, client_id: str) -> None:
        await self._bulk.write_journal(self._conn)  # the DELETEs select from the journal
        await self._bulk.write_tasks(self._conn)  # and delete tasks and timers
        self._bulk.clear_client(client_id)  # as the DELETEs below do in the tables
        await super().clear_read_models(client_id)
        await self._open_tasks.reread(client_id)  # a task a clientless event caused stays


class _RebuildPrivacy(_Privacy):
    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn)
        self._bulk = bulk

    async def apply_staff(self, event: RecordedEvent) -> None:
        if self._bulk.writes_shared:  # rows of no client: the shared writer's
            await super().apply_staff(event)


class _RebuildUnitOfWork(PostgresFollowupUnitOfWork):
    """A unit writing the rebuild's schema. Only the rebuild's one connection writes it (the
    live writers write ``fu_read``; a partitioned rebuild's processes, one connection each,
    write disjoint clients, :mod:`.partitioned_rebuild`), so a client lock serialises against
    nobody: it is not taken (one round trip per event less, #12); facts, open tasks, the
    journal's check, the applied record and the timeline are kept in memory and written in
    bulk (:class:`_BulkWrites`)."""

    def __init__(self, conn: PgConnection, bulk: _BulkWrites) -> None:
        super().__init__(conn, pg_schemas.REBUILD_CLIENT_LOCK_CLASS)
        self._bulk = bulk
        self.clients = _RebuildClients(conn, bulk)
        self.tasks = _RebuildTasks(conn, bulk)
        self.timers = _RebuildTimers(conn, bulk)
        self.activity = _RebuildActivity(conn, bulk)
        self.holdings = _RebuildHoldings(conn, bulk)
        self.journal = _RebuildJournal(conn, bulk, self.tasks)
        self.privacy = _RebuildPrivacy(conn, bulk)

    async def lock_client(self, client_id: str) -> None:
        return None

    async def lock_products(self, product_ids: Collection[str]) -> None:
        # Nothing to serialise: every process applies every rating, in log order, to its own
        # memory of them and re-rates its own clients' holdings (:mod:`.rebuild_routes`).
        return None

    async def try_lock_products(self, product_ids: Collection[str]) -> bool:
        return True  # none needed (:meth:`lock_products`)

    def owns_client(self, client_id: str) -> bool:
        return self._bulk.owns(client_id)

    async def try_lock_client(self, client_id: str) -> bool:
        return True

    async def hold_clients(self, client_ids: Sequence[str]) -> None:
        return None  # nothing to lock; read when asked

    async def hold_clients_of(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        # Nothing to lock. What it would read ahead is in memory, but for what was forgotten
        # past the bounds: the applied ids and the journal's places, one statement each per
        # batch rather than one per event (facts and open tasks are read when asked).
        await self._bulk.learn_applied(self._conn, (e.event_id for e, _ in events))
        await self._bulk.learn_places(
            self._conn,
            ((e.client_id, p.source) for e, p in events if e.client_id is not None and p),
        )

    async def look_up_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        await self.tasks.load_caused_by(source_event_ids)  # its tasks are in memory (_bulk)
        return await self.events.task_creations_of(source_event_ids)

    async def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        await self._bulk.learn_applied(self._conn, [event.event_id])
        return self._bulk.mark_applied(event, position)

    async def mark_applied_all(
        self,
        events: Sequence[tuple[RecordedEvent, SourcePosition | None]],
        *,
        locking: Sequence[bool] = (),  # nothing to lock (see the class)
    ) -> set[uuid.UUID]:
        await self._bulk.learn_applied(self._conn, (e.event_id for e, _ in events))
        return {e.event_id for e, position in events if self._bulk.mark_applied(e, position)}

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        mark = self._bulk.mark()
        try:
            async with self._conn.transaction():  # nested: a savepoint
                yield
                # what fails fails within the savepoint: the event is skipped alone
                await self._bulk.write_tasks(self._conn)
        except BaseException:
            self._bulk.rollback_to(mark)
            raise


class PostgresRebuildTarget:
    def __init__(
        self,
        admin_pool: PgPool | None,
        database_url: str,
        *,
        swap_lock_timeout_s: float = 2.0,
        swap_lock_attempts: int = 30,
        swap_retry_pause_s: float = 1.0,
        swap_idle_timeout_s: float = 60.0,
        deferred_indexes: frozenset[str] = DEFERRED_INDEXES,
        part: int = 0,
        parts: int = 1,
    ) -> None:
        self._admin = admin_pool
        self._database_url = database_url
        self._swap_lock_timeout_ms = max(1, int(swap_lock_timeout_s * 1000))
        self._swap_lock_attempts = swap_lock_attempts
        self._swap_retry_pause_s = swap_retry_pause_s
        self._swap_idle_timeout_ms = max(1, int(swap_idle_timeout_s * 1000))
        self.swap_lock_waits = 0
        self._deferred_indexes = deferred_indexes
        self.indexes_built: list[str] = []
        """The live indexes the rebuild's schema got after its load (:meth:`loaded`)."""
        self._bulk = _BulkWrites(part, parts)
        self._next_analyze = FIRST_ANALYZE
        self._number = 0
        self.schema = ""
        self.retired = ""
        self._started_at: datetime | None = None
        self._pool: PgPool | None = None
        self._conn: PgConnection | None = None
        self._release: contextlib.AsyncExitStack | None = None

    async def open(self) -> None:
        async with self._admin_pool().acquire() as conn:
            self._number = await conn.fetchval(
                "INSERT INTO fu_rebuilds (schema_name) VALUES ('') RETURNING id"
            )
            self.schema = f"{pg_schemas.REBUILD_PREFIX}{self._number}"
            self.retired = f"{pg_schemas.RETIRED_PREFIX}{self._number}"
            self._started_at = await conn.fetchval(
                "UPDATE fu_rebuilds SET schema_name = $2 WHERE id = $1 RETURNING started_at",
                self._number,
                self.schema,
            )
            await pg_schemas.clone_schema(conn, self.schema, deferred=self._deferred_indexes)
        await self._connect()

    async def attach(self, schema: str) -> None:
        """A process of a partitioned rebuild (:mod:`.partitioned_rebuild`): writes its share
        into ``schema``, which another process opened (and swaps, or discards)."""
        self.schema = schema
        await self._connect()

    async def _connect(self) -> None:
        self._release = contextlib.AsyncExitStack()
        self._pool = await open_pool(
            pg_schemas.with_search_path(self._database_url, self.schema), min_size=1, max_size=1
        )
        self._release.push_async_callback(self._pool.close)
        self._conn = await self._release.enter_async_context(self._pool.acquire())
        await binary_jsonb(self._conn)

    async def adopt_load(self, written: int) -> None:
        """Other processes loaded the schema (a partitioned rebuild, ``written`` applied
        events recorded): nothing of it is remembered here, so the catch-up and the swap read
        back what they need (the bounded mode, "Rebuild memory bound"); its tables analysed
        once, as a load of that size would have."""
        self._bulk.forget_all()
        self._bulk.written = written
        await self._analyze(self._connection())
        self._next_analyze = max(FIRST_ANALYZE, written * ANALYZE_GROWTH)

    def _admin_pool(self) -> PgPool:
        if self._admin is None:
            raise RuntimeError(
                "a process attached to a rebuild's schema neither opens nor drops it"
            )
        return self._admin

    @property
    def written(self) -> int:
        """Applied events recorded in the schema by this target (:meth:`_BulkWrites.flush`)."""
        return self._bulk.written

    def _connection(self) -> PgConnection:
        if self._conn is None:
            raise RuntimeError("the rebuild target is not open")
        return self._conn

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        conn = self._connection()
        mark = self._bulk.mark()
        try:
            async with conn.transaction():
                yield _RebuildUnitOfWork(conn, self._bulk)
                await self._bulk.flush(conn)
        except BaseException:
            self._bulk.rollback_to(mark)
            raise
        self._bulk.committed()
        if self._bulk.written >= self._next_analyze:
            await self._analyze(conn)
            self._next_analyze = self._bulk.written * ANALYZE_GROWTH

    async def loaded(self) -> None:
        """The indexes deferred while loading built, each by one sort of its table, and any a
        migration added to the live schema since :meth:`open` (read from it now: its names and
        definitions), so the schema swapped in has the live indexes."""
        conn = self._connection()
        async with conn.transaction():
            self.indexes_built = await pg_schemas.build_missing_indexes(conn, self.schema)

    async def _analyze(self, conn: PgConnection) -> None:
        """The rebuild's tables analysed, between two of its transactions (#12). A fresh
        schema has no statistics (autovacuum analyses it late or, within a rebuild's
        minutes, not at all), and the plans its statements got then stayed: the timers'
        ``SYNC_TIMERS`` deleted a task's unfired timers by a scan of *every* unfired timer
        (the partial index ``fu_timers_due``, not ``fu_timers_of_task``), a cost per task
        write that grew with the rebuild (quadratic over a long one). Statistics invalidate
        those plans; the tables' shape, once seen, holds as they grow, so a few ANALYZEs at
        growing intervals are enough."""
        for table in await pg_schemas.read_model_tables(conn, self.schema):
            await conn.execute(
                f"ANALYZE {pg_schemas.checked_schema(self.schema)}."
                f"{pg_schemas.checked_schema(table)}"
            )

    @contextlib.asynccontextmanager
    async def swap(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        """The swap lock, exclusively, waited for ``swap_lock_timeout_s`` at a time (#12): an
        unbounded wait queues every live writer behind it (PostgreSQL grants a shared request
        after the exclusive one waiting before it), so one long live transaction stalled the
        whole service with the rebuild. A timed-out attempt rolls back (nothing was done
        yet), lets the writers through for ``swap_retry_pause_s`` and tries again; after
        ``swap_lock_attempts`` it gives up with :class:`SwapLockBusy`."""
        conn = self._connection()
        for attempt in range(1, self._swap_lock_attempts + 1):
            transaction = conn.transaction()
            await transaction.start()
            try:
                # SET LOCAL takes no bind parameter; the value is an int we computed
                await conn.execute(f"SET LOCAL lock_timeout = {self._swap_lock_timeout_ms}")
                await pg_schemas.hold_swap_lock_exclusive(conn)
            except asyncpg.LockNotAvailableError:
                await transaction.rollback()
                self.swap_lock_waits += 1
                log.warning(
                    "rebuild swap: live writers held the swap lock; retrying",
                    extra={
                        "attempt": attempt,
                        "attempts": self._swap_lock_attempts,
                        "lock_timeout_ms": self._swap_lock_timeout_ms,
                    },
                )
                await asyncio.sleep(self._swap_retry_pause_s)
                continue
            except BaseException:
                await transaction.rollback()
                raise
            mark = self._bulk.mark()
            try:
                # the swap's own statements wait as long as they need (the lock is held); but
                # a swap that sits idle holding the lock (waiting on the broker for its tail:
                # the benchmark's stall, every live writer queued behind it) is ended by
                # PostgreSQL after swap_idle_timeout_s, which frees the lock (#12)
                await conn.execute(
                    "SET LOCAL lock_timeout TO DEFAULT; SET LOCAL "
                    f"idle_in_transaction_session_timeout = {self._swap_idle_timeout_ms}"
                )
                yield _RebuildUnitOfWork(conn, self._bulk)
            except BaseException as exc:
                self._bulk.rollback_to(mark)
                try:
                    await transaction.rollback()
                except (asyncpg.InterfaceError, asyncpg.InternalClientError) as lost:
                    # the connection is gone, and the lock with it; or its session was ended
                    # and its close not yet read (postgres/faults.py, #12), the same
                    if not (isinstance(lost, asyncpg.InterfaceError) or session_ended_unread(lost)):
                        raise
                    raise SwapAbandoned(
                        "the swap's connection was lost, the swap lock with it (PostgreSQL "
                        "ends a swap that sits idle holding the lock longer than "
                        f"{self._swap_idle_timeout_ms} ms, e.g. waiting for its tail from "
                        "the broker). Nothing was swapped: the live read models are "
                        "unchanged; run the rebuild again"
                    ) from exc
                raise
            await transaction.commit()
            self._bulk.committed()
            return
        raise SwapLockBusy(
            f"the swap lock was not free within {self._swap_lock_attempts} attempts of "
            f"{self._swap_lock_timeout_ms} ms: a live transaction holds it (see "
            "pg_locks / pg_stat_activity); the live read models are unchanged, "
            f"the rebuilt schema {self.schema} is dropped; run the rebuild again"
        )

    async def store_events_not_on_kafka(self) -> list[tuple[RecordedEvent, SourcePosition]]:
        """followup's own events that may not have reached Kafka yet and this rebuild has not
        applied: unpublished outbox rows, and the recent ones (a relay may have sent them after
        the end offsets were captured)."""
        assert self._started_at is not None
        rows = await self._connection().fetch(
            STORE_EVENTS_NOT_ON_KAFKA, self._started_at - RECENT_STORE_EVENTS
        )
        # those this rebuild applied already (its catch-up read them from the topics) are left
        # out: each would cost the swap a savepoint, under the lock, to change nothing (#12;
        # right after a burst, every task creation of the last minutes is recent)
        await self._bulk.learn_applied(self._connection(), (r["event_id"] for r in rows))
        return [  # only those left are validated (#12: under the swap lock)
            (
                stored_envelope(r["envelope"]),
                SourcePosition(STORE_SOURCE, r["global_position"]),
            )
            for r in rows
            if r["event_id"] not in self._bulk.applied
        ]

    async def swap_in(self, *, applied: int, skipped: int) -> None:
        conn = self._connection()
        await self._bulk.flush(conn)  # before the rename: the search path names the schema
        await pg_schemas.swap_in(conn, rebuilt=self.schema, retired=self.retired)
        await conn.execute(
            "UPDATE fu_rebuilds SET finished_at = now(), events = $2, skipped = $3 WHERE id = $1",
            self._number,
            applied,
            skipped,
        )

    async def close(self) -> None:
        if self._release is not None:
            await self._release.aclose()
            self._release = None
        self._conn = None

    async def drop_retired(self) -> None:
        async with self._admin_pool().acquire() as conn:
            await pg_schemas.drop_schema(conn, self.retired)

    async def discard(self) -> None:
        """The rebuild failed before its swap committed: its schema is dropped. Only this
        rebuild ever had its name (``fu_rebuild_<n>``, ``n`` its own row's id); a swap whose
        commit's outcome is unknown and did rename it left no schema of that name (and the
        live one is named ``fu_read``). A failure here is logged, not raised over the
        rebuild's own."""
        if not self.schema:
            return  # opening failed before it had one
        try:
            async with self._admin_pool().acquire() as conn:
                await pg_schemas.drop_schema(conn, self.schema)
        except Exception:
            log.exception(
                "rebuild: could not drop the schema of a failed rebuild",
                extra={"schema": self.schema},
            )
