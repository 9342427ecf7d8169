"""The PostgreSQL implementation of followup's unit of work (ADR-0013).

A unit is one transaction on one connection whose ``search_path`` chooses the schema written
(the live read models or a rebuild's copy, see :mod:`.schemas`). The repositories are thin
wrappers over the SQL of :mod:`.read_models` and its neighbours.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence, Set
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from branchline_followup.adapters import client_journal, read_models
from branchline_followup.adapters.collected_writes import (
    COMPLAINT_SET,
    RECEIVED,
    SURVEY,
    CollectedStatement,
    ServiceLoopRow,
    add_appended,
    add_applied,
    add_clients,
    add_console,
    add_journal,
    add_service_loop,
    add_tasks,
    add_timeline,
    add_timers,
    add_visits,
    joins_collected,
    timer_sync_rounds,
)
from branchline_followup.adapters.console_read_models import (
    ConsoleRow,
    apply_for_console,
    console_rows,
    timeline_row,
)
from branchline_followup.adapters.console_refusals import record_refusal
from branchline_followup.adapters.json_rows import rows_argument, values_argument
from branchline_followup.adapters.personal_data import (
    StaffPrivacyState,
    apply_personal_data,
    apply_staff_privacy,
    pending_erasures,
    pending_staff_erasures,
    personal_values,
    privacy_state,
    staff_privacy_state,
)
from branchline_followup.adapters.pg_schemas import (
    BEGIN_HOLDING_SWAP_LOCK,
    LIVE_CLIENT_LOCK_CLASS,
    LIVE_PRODUCT_LOCK_CLASS,
    REBUILD_PRODUCT_LOCK_CLASS,
    lock_client,
    lock_clients,
    lock_products,
    try_lock_client,
    try_lock_products,
)
from branchline_followup.adapters.read_ahead import (
    Asked,
    ReadAhead,
    mark_applied_locking_reading,
    read_ahead,
    read_caused_by,
)
from branchline_followup.adapters.read_models import COMPLAINT_STEP_COLUMNS
from branchline_followup.adapters.service_loop_facts import (
    CLOSURE_UPDATE,
    closure_reason,
    record_service_loop_facts,
    service_loop_row,
)
from branchline_followup.application.ports import JournaledEvent
from branchline_followup.domain import HANDLED_EVENT_TYPES, DurableTimer, FollowupTask
from branchline_followup.domain.records import (
    ClientFacts,
    DueTimer,
    PrivacyState,
    SealedValue,
    StaffMember,
)
from branchline_followup.domain.suitability import Holding, Rating
from branchline_shared.events.catalogue import ComplaintEvent, EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.stored_documents import stored_envelope
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.events.upcasting import upcast
from branchline_shared.events.vocabulary import ProductRisk
from branchline_shared.eventstore.ports import ConcurrencyError, StoredEvent, StoredPosition
from branchline_shared.eventstore.postgres import PostgresUnitOfWork as PostgresEventWrites
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.commit_outcome import (
    CommitOutcomeUnknown,
    after_lost_commit,
    lost_in_flight,
)
from branchline_shared.postgres.pool import PgConnection, PgPool


def copied_facts(facts: ClientFacts) -> ClientFacts:
    """``copy.copy(facts)``: a new instance of its class holding the same field values (a
    plain dataclass: its fields are its instance dictionary), without ``copy``'s generic
    ``__reduce_ex__`` round (#12: about a quarter of its cost, as the rebuild's unit copies;
    one or two per event a batch applies)."""
    copied = object.__new__(type(facts))
    copied.__dict__.update(facts.__dict__)
    return copied


class _Clients:
    """The clients' facts; those of a client whose lock the unit holds are kept once read or
    written (#12: a batch reads a client's row once, not once per event): nobody else writes
    the row while the lock is held, so the copy stays what the row holds until the unit ends
    (a savepoint that fails restores the copies with the locks). ``collect``: the kept facts
    saved are written together by :meth:`write_unwritten` (before the unit commits, and
    before anything in it reads or changes the rows otherwise)."""

    def __init__(
        self, conn: PgConnection, locked: set[str] | None = None, *, collect: bool = False
    ) -> None:
        self._conn = conn
        self._locked = locked if locked is not None else set()
        self._collect = collect
        self.kept: dict[str, ClientFacts | None] = {}
        self.unwritten: set[str] = set()
        self.closure_reasons: dict[str, str | None] = {}
        """``collect``: clients of :attr:`unwritten` whose account the unit closed or reopened
        (D-09), with the ``account_closure_reason`` the last one set on the row
        (:meth:`close_account`): written with the facts."""

    async def get(self, client_id: str) -> ClientFacts | None:
        if client_id in self.kept:
            facts = self.kept[client_id]
            # a shallow copy the caller may change (``dataclasses.replace`` re-ran
            # ``__init__`` field by field, #12; as the rebuild's unit copies)
            return None if facts is None else copied_facts(facts)
        facts = await read_models.fetch_client(self._conn, client_id)
        if client_id in self._locked:
            self.kept[client_id] = None if facts is None else copied_facts(facts)
        return facts

    def unread(self, client_ids: Sequence[str], held: Set[str] | None = None) -> list[str]:
        """Those of these clients whose facts are worth reading ahead: locked (or in
        ``held``, to be locked before the read), not kept."""
        locked = self._locked if held is None else held
        return [c for c in client_ids if c not in self.kept and c in locked]

    def keep_read(self, client_ids: Sequence[str], found: dict[str, ClientFacts]) -> None:
        """Keep the facts of these locked clients read ahead (absent: no row)."""
        for client_id in client_ids:
            self.kept[client_id] = found.get(client_id)

    async def save(self, facts: ClientFacts) -> None:
        if facts.client_id in self._locked:
            self.kept[facts.client_id] = copied_facts(facts)
            if self._collect:
                self.unwritten.add(facts.client_id)
                return
        else:
            self.kept.pop(facts.client_id, None)
        await read_models.save_client(self._conn, facts)

    async def write_unwritten(self) -> None:
        facts, reasons = self.take_unwritten()
        await read_models.save_clients(self._conn, facts)
        if reasons:
            await self._conn.executemany(CLOSURE_UPDATE, list(reasons.items()))

    def take_unwritten(self) -> tuple[list[ClientFacts], dict[str, str | None]]:
        """The facts saved and not written yet, by client id, and the closure reasons to set
        on their rows (:attr:`closure_reasons`); the caller writes them."""
        rows = [self.kept[c] for c in sorted(self.unwritten)]
        reasons, self.closure_reasons = self.closure_reasons, {}
        self.unwritten.clear()
        return [f for f in rows if f is not None], reasons

    def close_account(self, client_id: str, reason: str | None) -> bool:
        """A closure's or reopening's write of the client's row (D-09,
        :data:`.service_loop_facts.CLOSURE_UPDATE`: ``account_closure_reason`` set, if the
        row exists) kept with its facts, to be written with them (#12: a statement of its own
        per closure before); False when the unit does not collect or does not know whether
        the row exists (the caller writes it at once). The row exists when its write would
        run in turn iff the facts kept are not None: kept facts are what the row holds, or
        will once the facts saved are written, which the write in turn does first; with none
        the ``UPDATE`` changes nothing, so nothing is kept."""
        if not self._collect or client_id not in self._locked or client_id not in self.kept:
            return False
        if self.kept[client_id] is not None:
            self.closure_reasons[client_id] = reason
            self.unwritten.add(client_id)
        return True

    def forget(self, client_id: str) -> None:
        """The client's row is deleted (or changed) by the caller: nothing kept to write."""
        self.kept.pop(client_id, None)
        self.unwritten.discard(client_id)
        self.closure_reasons.pop(client_id, None)

    async def claim_due_stage_changes(self, now: datetime, limit: int) -> list[str]:
        return await read_models.claim_due_stage_changes(self._conn, now, limit)

    async def count_due_stage_changes(self, now: datetime) -> int:
        return await read_models.count_due_stage_changes(self._conn, now)

    async def dead_letter_stage_change(self, client_id: str, reason: str) -> None:
        await self.write_unwritten()
        self.forget(client_id)
        await read_models.dead_letter_stage_change(self._conn, client_id, reason)


class _Tasks:
    """Tasks; the open tasks of a client whose lock the unit holds are kept once read (and
    follow what the unit saves), as the tasks read ahead by :meth:`load` are (#12): nobody
    else writes a locked client's tasks."""

    def __init__(
        self, conn: PgConnection, locked: set[str] | None = None, *, collect: bool = False
    ) -> None:
        self._conn = conn
        self._locked = locked if locked is not None else set()
        self._collect = collect
        self.open_kept: dict[str, dict[uuid.UUID, FollowupTask]] = {}
        self.known: dict[uuid.UUID, FollowupTask | None] = {}
        self.caused_known: set[uuid.UUID] = set()
        """Source events whose every stored task is in :attr:`known` (read ahead by
        :meth:`load_caused_by`; the unit's own saves of their tasks follow)."""
        self.unwritten: dict[uuid.UUID, FollowupTask] = {}
        """``collect``: tasks of locked clients saved, written together by
        :meth:`write_unwritten` (an upsert of the whole row: the last save is the row)."""

    async def write_unwritten(self) -> None:
        await read_models.save_tasks(self._conn, self.take_unwritten())

    def take_unwritten(self) -> list[FollowupTask]:
        """The tasks saved and not written yet, in the order last saved; the caller writes
        them."""
        tasks, self.unwritten = list(self.unwritten.values()), {}
        return tasks

    async def get(self, task_id: uuid.UUID) -> FollowupTask | None:
        if task_id in self.known:
            return self.known[task_id]
        if task_id in self.unwritten:
            return self.unwritten[task_id]
        return await read_models.fetch_task(self._conn, task_id)

    async def load(self, task_ids: Sequence[uuid.UUID]) -> None:
        wanted = [t for t in task_ids if t not in self.known]
        if wanted:
            await self.write_unwritten()
            found = await read_models.fetch_tasks(self._conn, wanted)
            for task_id in wanted:
                self.known[task_id] = found.get(task_id)

    async def load_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> None:
        wanted = self.unread_caused(source_event_ids)
        if wanted:
            await self.write_unwritten()
            self.keep_caused(wanted, await read_models.fetch_tasks_caused_by(self._conn, wanted))

    def unread_caused(self, source_event_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Those of these source events whose tasks are not read ahead yet (the caller
        writes :attr:`unwritten` before reading them)."""
        return [s for s in dict.fromkeys(source_event_ids) if s not in self.caused_known]

    def keep_caused(self, wanted: Sequence[uuid.UUID], found: Sequence[FollowupTask]) -> None:
        """Keep every stored task the events ``wanted`` caused (``found``: all of them)."""
        for task in found:
            self.known[task.id] = task
        self.caused_known.update(wanted)

    async def get_caused(self, task_id: uuid.UUID, caused_by: uuid.UUID) -> FollowupTask | None:
        if task_id in self.known:
            return self.known[task_id]
        if task_id in self.unwritten:
            return self.unwritten[task_id]
        if caused_by in self.caused_known:
            return None  # every task it caused was read ahead, or saved since (_saved)
        return await read_models.fetch_task(self._conn, task_id)

    def unread_open(self, client_ids: Sequence[str], held: Set[str] | None = None) -> list[str]:
        """Those of these clients whose open tasks are worth reading ahead: locked (or in
        ``held``, to be locked before the read), not kept (the caller writes
        :attr:`unwritten` before reading them)."""
        locked = self._locked if held is None else held
        return [c for c in client_ids if c not in self.open_kept and c in locked]

    def keep_open(self, found: dict[str, list[FollowupTask]]) -> None:
        """Keep the open tasks of locked clients read ahead (every client read listed)."""
        for client_id, tasks in found.items():
            self.open_kept[client_id] = {t.id: t for t in tasks}

    async def open_of(self, client_id: str) -> list[FollowupTask]:
        kept = self.open_kept.get(client_id)
        if kept is not None:
            return sorted(kept.values(), key=lambda t: (t.opened_at, t.id))  # as the SELECT
        await self.write_unwritten()
        tasks = await read_models.open_tasks_of(self._conn, client_id)
        if client_id in self._locked:
            self.open_kept[client_id] = {t.id: t for t in tasks}
        return tasks

    async def save(self, tasks: Sequence[FollowupTask]) -> None:
        if self._collect and all(self.holds(t) for t in tasks):
            for task in tasks:
                self.unwritten.pop(task.id, None)  # written in the order last saved
                self.unwritten[task.id] = task
                self._saved(task)
            return
        await self.write_unwritten()
        await read_models.save_tasks(self._conn, tasks)
        for task in tasks:
            self._saved(task)

    def holds(self, task: FollowupTask) -> bool:
        """Whether the unit holds the task's client (only it writes the task meanwhile)."""
        return task.client_id in self._locked

    def _saved(self, task: FollowupTask) -> None:
        if task.id in self.known or task.source_event_id in self.caused_known:
            self.known[task.id] = task
        kept = self.open_kept.get(task.client_id)
        if kept is not None:
            if task.is_open:
                kept[task.id] = task
            else:
                kept.pop(task.id, None)

    async def set_outcome(self, task_id: uuid.UUID, outcome: str) -> None:
        await self.write_unwritten()  # the UPDATE needs the row
        await read_models.set_task_outcome(self._conn, task_id, outcome)

    async def set_overdue(self, task_id: uuid.UUID, at: datetime) -> None:
        await self.write_unwritten()  # the UPDATE needs the row
        await read_models.set_task_overdue(self._conn, task_id, at)

    async def set_escalated(self, task_id: uuid.UUID, to: str) -> None:
        await self.write_unwritten()  # the UPDATE needs the row
        await read_models.set_task_escalated(self._conn, task_id, to)
        # as the UPDATE: the first escalation only, in what is kept too
        known = self.known.get(task_id)
        if known is not None and known.escalated_to is None:
            self.known[task_id] = known.model_copy(update={"escalated_to": to})
        for kept in self.open_kept.values():
            task = kept.get(task_id)
            if task is not None and task.escalated_to is None:
                kept[task_id] = task.model_copy(update={"escalated_to": to})

    def forget_client(self, client_id: str) -> None:
        """The client's tasks are deleted by the caller: read them again when asked."""
        self.open_kept.pop(client_id, None)
        self.known = {i: t for i, t in self.known.items() if t is None or t.client_id != client_id}
        self.caused_known.clear()  # a source's tasks may be the client's: asked again

    def snapshot(self) -> tuple[Any, ...]:
        kept = {c: dict(k) for c, k in self.open_kept.items()}
        return kept, dict(self.known), dict(self.unwritten), set(self.caused_known)

    def restore(self, saved: tuple[Any, ...]) -> None:
        kept, known, unwritten, caused_known = saved
        self.open_kept, self.known, self.unwritten = kept, known, unwritten
        self.caused_known = caused_known


class _Timers:
    """Durable timers. ``collect``: the syncs of tasks of locked clients are written together
    by :meth:`write_unwritten`, in the order made (one round trip); anything else the unit
    asks of the timers writes them (and the tasks collected) first."""

    def __init__(
        self, conn: PgConnection, tasks: _Tasks | None = None, *, collect: bool = False
    ) -> None:
        self._conn = conn
        self._tasks = tasks
        self._collect = collect
        self.unwritten: list[tuple[Any, ...]] = []

    async def write_unwritten(self) -> None:
        if self._tasks is not None:
            await self._tasks.write_unwritten()
        if self.unwritten:
            rows, self.unwritten = self.unwritten, []
            await self._conn.executemany(read_models.SYNC_TIMERS, rows)

    def take_unwritten(self) -> list[tuple[Any, ...]]:
        """The syncs collected (:func:`.read_models.sync_timers_args`), in the order made;
        the caller writes them (and the tasks collected)."""
        rows, self.unwritten = self.unwritten, []
        return rows

    async def sync(self, task: FollowupTask, wanted: Sequence[DurableTimer]) -> None:
        await self.sync_all([(task, wanted)])

    async def sync_all(
        self, changes: Sequence[tuple[FollowupTask, Sequence[DurableTimer]]]
    ) -> None:
        if not changes:
            return
        tasks = self._tasks
        if self._collect and tasks is not None and all(tasks.holds(t) for t, _ in changes):
            self.unwritten.append(read_models.sync_timers_args(changes))
            return
        await self.write_unwritten()
        await read_models.sync_timers(self._conn, changes)

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
        await self.write_unwritten()
        await read_models.record_timer_fired(
            self._conn,
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
        await self.write_unwritten()
        await read_models.mark_timer_fired(self._conn, task_id, kind, at, event_id)

    async def claim_due(self, now: datetime, limit: int) -> list[DueTimer]:
        await self.write_unwritten()
        return await read_models.claim_due_timers(self._conn, now, limit)

    async def count_due(self, now: datetime) -> int:
        await self.write_unwritten()
        return await read_models.count_due_timers(self._conn, now)

    async def consume(self, timer_id: uuid.UUID, at: datetime) -> None:
        await self.write_unwritten()
        await read_models.consume_timer(self._conn, timer_id, at)

    async def dead_letter(self, timer_id: uuid.UUID, at: datetime, reason: str) -> None:
        await self.write_unwritten()
        await read_models.dead_letter_timer(self._conn, timer_id, at, reason)

    async def dead(self) -> list[tuple[uuid.UUID, str]]:
        await self.write_unwritten()
        return await read_models.dead_timers(self._conn)


_RATINGS_OF = (
    "SELECT product_id, event_id, risk, effective_at FROM fu_product_ratings "
    "WHERE product_id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)))"
)
"""Every rating of the products a JSON array names (:func:`.json_rows.values_argument`)."""


class _Holdings:
    """Holdings and the shelf's ratings. ``keep_ratings`` (the live units, #12: a product's
    ratings were read by a statement of their own per sale and per rating): a product's
    ratings are read once per unit, with those of every product the unit's events named
    (:meth:`expect`) in the same statement, and kept with the ratings the unit records."""

    def __init__(self, conn: PgConnection, *, keep_ratings: bool = False) -> None:
        self._conn = conn
        self._keep_ratings = keep_ratings
        self.ratings: dict[str, dict[uuid.UUID, Rating]] = {}
        """``keep_ratings``: product → its ratings by event id, as the table holds them in
        this transaction (those read, then the unit's own: ``ON CONFLICT DO NOTHING``, an
        event's first kept)."""
        self.expected: set[str] = set()
        """Products the unit's events name, read with the first product asked for."""
        self.held: dict[str, dict[str, ProductRisk]] = {}
        """``keep_ratings``: client → its holdings' risks by product, as the table holds them
        in this transaction (read ahead with the batch's clients, then the unit's own
        :meth:`hold` and :meth:`rerate`; a re-projection drops its client's: :meth:`forget`)."""

    def expect(self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]) -> None:
        """Note the products these events name (a sale's, a shelf event's), to read their
        ratings in one statement when the first is asked for. A hint only: a product not
        noted is read when asked, one noted and never asked costs a row read."""
        if not self._keep_ratings:
            return
        for event, _ in events:
            if event.type == EventType.PRODUCT_SOLD:
                product_id = event.data.get("product_id")
                if isinstance(product_id, str):
                    self.expected.add(product_id)
            elif event.product_id is not None:
                self.expected.add(event.product_id)

    def unread_ratings(self) -> list[str]:
        """The products expected whose ratings are not kept yet (the read ahead's ask)."""
        if not self._keep_ratings:
            return []
        return sorted(self.expected - self.ratings.keys())

    def unread_holdings(self, client_ids: Iterable[str]) -> list[str]:
        """These clients whose holdings are not kept yet (the read ahead's ask)."""
        if not self._keep_ratings:
            return []
        return sorted(set(client_ids) - self.held.keys())

    def keep_read(
        self,
        ratings: dict[str, dict[uuid.UUID, Rating]],
        holdings: dict[str, dict[str, ProductRisk]],
    ) -> None:
        """Keep what the read ahead found (every product and client asked for)."""
        for product_id, read in ratings.items():
            self.ratings.setdefault(product_id, read)
        for client_id, risks in holdings.items():
            self.held.setdefault(client_id, risks)

    def forget(self, client_id: str) -> None:
        """The client's holdings are deleted by the caller (a re-projection, under the
        client's lock: only its own sales add a holding, a re-rating changes rows that
        exist): kept as none, as the table then holds them."""
        if self._keep_ratings:
            self.held[client_id] = {}

    async def hold(
        self, client_id: str, product_id: str, product_risk: str, since: datetime
    ) -> None:
        kept = self.held.get(client_id)
        if kept is not None:
            kept[product_id] = ProductRisk(product_risk)  # as the upsert leaves the row
        await self._conn.execute(
            "INSERT INTO fu_holdings (client_id, product_id, product_risk, since) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (client_id, product_id) DO UPDATE SET "
            "product_risk = EXCLUDED.product_risk, "
            "since = LEAST(fu_holdings.since, EXCLUDED.since)",
            client_id,
            product_id,
            product_risk,
            since,
        )

    async def of_client(self, client_id: str) -> list[Holding]:
        kept = self.held.get(client_id)
        if kept is not None:  # read ahead (#12); the domain's answers do not hang on the order
            return [Holding(p, risk) for p, risk in sorted(kept.items())]
        rows = await self._conn.fetch(
            "SELECT product_id, product_risk FROM fu_holdings WHERE client_id = $1 "
            "ORDER BY product_id",
            client_id,
        )
        return [Holding(r["product_id"], ProductRisk(r["product_risk"])) for r in rows]

    async def rerate(self, product_id: str, product_risk: str) -> list[tuple[str, datetime]]:
        rows = await self._conn.fetch(
            "UPDATE fu_holdings SET product_risk = $2 WHERE product_id = $1 "
            "RETURNING client_id, since",
            product_id,
            product_risk,
        )
        for r in rows:
            kept = self.held.get(r["client_id"])
            if kept is not None:
                kept[product_id] = ProductRisk(product_risk)
        return sorted((r["client_id"], r["since"]) for r in rows)

    async def record_rating(self, product_id: str, rating: Rating) -> None:
        await self._conn.execute(
            "INSERT INTO fu_product_ratings (product_id, event_id, risk, effective_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            product_id,
            rating.event_id,
            rating.risk.value,
            rating.effective_at,
        )
        kept = self.ratings.get(product_id)
        if kept is not None and rating.event_id not in kept:
            # as the row reads back: its instant in UTC (asyncpg's timestamptz)
            kept[rating.event_id] = Rating(
                rating.event_id, rating.risk, rating.effective_at.astimezone(UTC)
            )

    async def ratings_of(self, product_id: str) -> list[Rating]:
        if not self._keep_ratings:
            rows = await self._conn.fetch(
                "SELECT event_id, risk, effective_at FROM fu_product_ratings WHERE product_id = $1",
                product_id,
            )
            return [_rating(r) for r in rows]
        if product_id not in self.ratings:
            wanted = sorted((self.expected - self.ratings.keys()) | {product_id})
            for p in wanted:
                self.ratings[p] = {}
            for r in await self._conn.fetch(_RATINGS_OF, values_argument(wanted)):
                self.ratings[r["product_id"]][r["event_id"]] = _rating(r)
        return list(self.ratings[product_id].values())

    def snapshot(self) -> dict[str, dict[uuid.UUID, Rating]]:
        return {p: dict(kept) for p, kept in self.ratings.items()}

    def snapshot_held(self) -> dict[str, dict[str, ProductRisk]]:
        return {c: dict(kept) for c, kept in self.held.items()}


def _rating(row: Any) -> Rating:
    return Rating(row["event_id"], ProductRisk(row["risk"]), row["effective_at"])


_READS_HOLDINGS = frozenset({EventType.PRODUCT_SOLD.value, EventType.CLIENT_RISK_ASSESSED.value})
"""Events whose application reads their client's holdings (D-15, ``suitability``): a sale's
(after its own), a reassessment's (when it lowers the tolerance): read ahead (#12)."""

_CHANGES_CLIENT_ROW = frozenset(
    {EventType.CLIENT_ACCOUNT_CLOSED.value, EventType.CLIENT_ACCOUNT_REOPENED.value}
)
"""Events whose service-loop facts are written into ``fu_clients`` (its closure reason): kept
with the client's facts where the unit collects (:meth:`_Clients.close_account`)."""


class _Activity:
    def __init__(
        self,
        conn: PgConnection,
        *,
        collect_timeline: bool = False,
        clients: _Clients | None = None,
    ) -> None:
        self._conn = conn
        self._clients = clients
        self.timeline: list[tuple[Any, ...]] | None = [] if collect_timeline else None
        """The unit's console timeline rows, written together before it commits (#12:
        nothing reads the timeline while events are applied); None: each written at once."""
        self.console: list[ConsoleRow] = []
        """With :attr:`timeline`, the client pages' consent and assessment upserts, written
        together too (#12: one statement per consent purpose was most of what a benchmark
        registration's consent sent; nothing reads them while events are applied)."""
        self.visits: list[tuple[Any, ...]] = []
        """With :attr:`timeline`, the visits' facts (:func:`.read_models.visit_row`'s),
        written together too (#12: a visit event's upsert was a statement of its own in its
        batch; nothing reads ``fu_visits`` while events are applied)."""
        self.service_loop: list[ServiceLoopRow] = []
        """With :attr:`timeline`, the surveys, complaints and their steps, and the service-loop
        facts but a closure's (:func:`.collected_writes.add_service_loop`'s rows, in the order
        made), written together too (#12: each was a statement of its own per event; nothing
        reads those tables while events are applied). A closure's or reopening's reason goes
        with its client's facts (:meth:`_Clients.close_account`)."""

    async def record_console(self, event: Decoded, client_id: str) -> None:
        if self.timeline is None:
            await apply_for_console(self._conn, event, client_id)
            return
        self.timeline.append(timeline_row(event.envelope, client_id))
        self.console += console_rows(event, client_id)

    def take_timeline(self) -> list[tuple[Any, ...]]:
        """The timeline rows collected (:data:`.console_read_models.TIMELINE_INSERT`'s); the
        caller writes them."""
        if not self.timeline:
            return []
        rows = list(self.timeline)
        self.timeline.clear()
        return rows

    def take_console(self) -> list[ConsoleRow]:
        """The consent and assessment rows collected; the caller writes them."""
        rows = list(self.console)
        self.console.clear()
        return rows

    def take_visits(self) -> list[tuple[Any, ...]]:
        """The visits' rows collected; the caller writes them."""
        rows = list(self.visits)
        self.visits.clear()
        return rows

    def take_service_loop(self) -> list[ServiceLoopRow]:
        """The service loop's rows collected, in the order made; the caller writes them."""
        rows, self.service_loop = self.service_loop, []
        return rows

    async def _collect_service_loop(self, row: ServiceLoopRow) -> None:
        if not joins_collected(self.service_loop, *row):
            # A complaint received (an action planned) after a step (a completion) of it
            # collected: what that step changed depends on whether the row exists, so those
            # collected are written first, in their order.
            statement = CollectedStatement()
            add_service_loop(statement, self.take_service_loop())
            if statement.sql is not None:
                await self._conn.execute(statement.sql, *statement.args)
        self.service_loop.append(row)

    def forget_client(self, client_id: str) -> None:
        """Drop the client's collected rows, as a re-projection's DELETE does in the table."""
        if self.timeline:
            self.timeline[:] = [row for row in self.timeline if row[0] != client_id]
        if self.console:
            self.console[:] = [row for row in self.console if row[1][0] != client_id]
        if self.visits:
            self.visits[:] = [row for row in self.visits if row[0] != client_id]
        if self.service_loop:
            self.service_loop[:] = [r for r in self.service_loop if r[1][0] != client_id]

    async def record_refusal(self, event: Decoded) -> None:
        await record_refusal(self._conn, event)

    async def record_visit(self, event: Decoded, rm_id: str | None, **columns: Any) -> None:
        if self.timeline is not None and None not in columns.values():
            self.visits.append(read_models.visit_row(event, rm_id, columns))
            return
        # Written at once: a column set to null is not a collected row's (there, null leaves
        # the column as it is), and the visits collected before go first, in their order.
        statement = CollectedStatement()
        add_visits(statement, self.take_visits())
        if statement.sql is not None:
            await self._conn.execute(statement.sql, *statement.args)
        await read_models.record_visit(self._conn, event, rm_id, **columns)

    async def record_survey(
        self,
        event: Decoded,
        rm_id: str | None,
        visit_id: str | None,
        scores: dict[str, float],
    ) -> None:
        if self.timeline is None:
            await read_models.record_survey(self._conn, event, rm_id, visit_id, scores)
            return
        envelope = event.envelope
        row = (
            envelope.client_id,
            envelope.event_id,
            envelope.branch_id,
            rm_id,
            visit_id,
            envelope.occurred_at,
            scores["attitude"],
            scores["professionalism"],
            scores["response_speed"],
            scores["risk_management"],
            scores["convenience"],
        )
        await self._collect_service_loop((SURVEY, row))

    async def record_complaint_received(
        self, event: Decoded, rm_id: str | None, severity: str, topic: str | None
    ) -> None:
        if self.timeline is None:
            await read_models.record_complaint_received(self._conn, event, rm_id, severity, topic)
            return
        envelope = event.envelope
        row = (
            envelope.client_id,
            payload_as(event, ComplaintEvent).complaint_id,
            envelope.branch_id,
            rm_id,
            severity,
            topic,
            envelope.occurred_at,
        )
        await self._collect_service_loop((RECEIVED, row))

    async def record_complaint_step(self, event: Decoded, status: str, **columns: Any) -> None:
        if self.timeline is None:
            await read_models.record_complaint_step(self._conn, event, status, **columns)
            return
        unknown = columns.keys() - COMPLAINT_STEP_COLUMNS
        if unknown:
            raise ValueError(f"unknown complaint columns {sorted(unknown)}")
        complaint_id = payload_as(event, ComplaintEvent).complaint_id
        row = (event.envelope.client_id, complaint_id, {"status": status, **columns})
        await self._collect_service_loop((COMPLAINT_SET, row))

    async def record_service_loop_facts(self, event: Decoded, rm_id: str | None) -> None:
        if self.timeline is not None and event.envelope.type not in _CHANGES_CLIENT_ROW:
            row = service_loop_row(event, rm_id)
            if row is not None:
                await self._collect_service_loop(row)
            return
        if self._clients is not None and event.envelope.type in _CHANGES_CLIENT_ROW:
            client_id = event.envelope.client_id
            if (
                self.timeline is not None
                and client_id is not None
                and self._clients.close_account(client_id, closure_reason(event))
            ):
                return  # written with the client's facts (#12)
            await self._clients.write_unwritten()  # its UPDATE needs the row written
        await record_service_loop_facts(self._conn, event, rm_id)

    async def record_staff(self, staff_id: str, branch_id: str | None) -> None:
        await self._conn.execute(
            "INSERT INTO fu_staff (staff_id, branch_id) VALUES ($1, $2) ON CONFLICT (staff_id) "
            "DO UPDATE SET branch_id = COALESCE(EXCLUDED.branch_id, fu_staff.branch_id)",
            staff_id,
            branch_id,
        )

    async def record_training(
        self, event: Decoded, staff_id: str, hours: Decimal, completed_at: datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO fu_staff_training (event_id, staff_id, hours, completed_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            event.envelope.event_id,
            staff_id,
            hours,
            completed_at,
        )


class _Privacy:
    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn

    async def apply(self, event: RecordedEvent) -> None:
        await apply_personal_data(self._conn, event)

    async def state(self, client_id: str) -> PrivacyState | None:
        return await privacy_state(self._conn, client_id)

    async def values(self, client_id: str) -> list[SealedValue]:
        return await personal_values(self._conn, client_id)

    async def pending_erasures(self) -> list[PrivacyState]:
        return await pending_erasures(self._conn)

    async def apply_staff(self, event: RecordedEvent) -> None:
        await apply_staff_privacy(self._conn, event)

    async def staff_state(self, staff_id: str) -> StaffPrivacyState | None:
        return await staff_privacy_state(self._conn, staff_id)

    async def pending_staff_erasures(self) -> list[StaffPrivacyState]:
        return await pending_staff_erasures(self._conn)

    async def staff_member(self, staff_id: str) -> StaffMember | None:
        row = await self._conn.fetchrow(
            "SELECT staff_id, branch_id FROM fu_staff WHERE staff_id = $1", staff_id
        )
        return None if row is None else StaffMember(row["staff_id"], row["branch_id"])


class _Journal:
    """The client journal. With ``collect``, the stores' latest places of the clients read
    ahead (:meth:`load`) are kept, so keeping one of their events is checked here and its row
    written with the others by :meth:`write_unwritten` (#12: one statement per batch, not per
    event); the client's lock makes the check the one the statement would make."""

    def __init__(
        self,
        conn: PgConnection,
        activity: _Activity | None = None,
        clients: _Clients | None = None,
        tasks: _Tasks | None = None,
        timers: _Timers | None = None,
        *,
        collect: bool = False,
        holdings: _Holdings | None = None,
    ) -> None:
        self._conn = conn
        self._activity = activity
        self._clients = clients
        self._tasks = tasks
        self._timers = timers
        self._holdings = holdings
        self._collect = collect
        self.latest: dict[tuple[str, str], client_journal.Place | None] = {}
        """(client, store) read ahead → the latest positioned place kept (None: none)."""
        self.unwritten: list[tuple[Any, ...]] = []

    def unread(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (client, store) pairs whose latest place is worth reading ahead (``collect``
        only: without it every event's row is checked and written by its own statement)."""
        if not self._collect:
            return []
        return [p for p in dict.fromkeys(pairs) if p not in self.latest]

    def keep_read(
        self, pairs: Sequence[tuple[str, str]], found: dict[tuple[str, str], client_journal.Place]
    ) -> None:
        """Keep the latest places of these pairs read ahead (absent: none kept yet)."""
        for pair in pairs:
            self.latest[pair] = found.get(pair)

    async def keep(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        row = client_journal.journal_row(event, position)
        _, client_id, source, global_position, recorded_ms, _ = row
        if client_id is None or (client_id, source) not in self.latest:
            return await client_journal.keep(self._conn, event, position)
        self.unwritten.append(row)
        if global_position is None:
            return False  # its place unknown: never found late (arrives_late)
        place = (recorded_ms, global_position)
        latest = self.latest[(client_id, source)]
        if latest is None or place > latest:
            self.latest[(client_id, source)] = place
            return False
        return latest > place

    async def write_unwritten(self) -> None:
        if self.unwritten:
            await self._conn.executemany(client_journal.KEEP_ROW, self.take_unwritten())

    def take_unwritten(self) -> list[tuple[Any, ...]]:
        """The rows kept and not written yet (:data:`.client_journal.KEEP_ROW`'s); the
        caller writes them."""
        rows, self.unwritten = self.unwritten, []
        return rows

    async def of_client(self, client_id: str) -> list[JournaledEvent]:
        await self.write_unwritten()
        return await client_journal.of_client(self._conn, client_id)

    async def clear_read_models(self, client_id: str) -> None:
        await self.write_unwritten()  # the DELETEs below select by the client's kept events
        if self._timers is not None:
            await self._timers.write_unwritten()  # and delete tasks and timers written
        if self._activity is not None:
            self._activity.forget_client(client_id)  # its timeline rows not written yet
        if self._clients is not None:
            self._clients.forget(client_id)  # its row is deleted below
        if self._tasks is not None:
            self._tasks.forget_client(client_id)  # its own events' tasks are deleted below
        if self._holdings is not None:
            self._holdings.forget(client_id)  # its holdings are deleted below
        await client_journal.clear_read_models(self._conn, client_id)


# Streams are taken in the event store's one order (docs/intake.md, "Lock order"): ``COLLATE
# "C"``, the byte order Python sorts in, not the database's collation (en_US or ICU order
# ``a-b`` and ``ab`` otherwise), in every statement that takes several, like the shared store.
_CREATE_AND_LOCK_STREAMS = (
    "INSERT INTO es_streams AS s (stream_id) "
    "SELECT stream_id FROM unnest($1::text[]) AS u(stream_id) "
    'ORDER BY stream_id COLLATE "C" '
    "ON CONFLICT (stream_id) DO UPDATE SET version = s.version "
    "RETURNING s.stream_id, s.version"
)

_APPEND_NUMBERED = """
WITH given AS (
    SELECT (r->>0)::uuid AS event_id, r->>1 AS stream_id, r->>2 AS type, r->>3 AS client_id,
           (r->>4)::timestamptz AS occurred_at, (r->>5)::timestamptz AS recorded_at,
           r->6 AS envelope, r->>7 AS topic, r->>8 AS message_key, n
    FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n)
), added AS (
    SELECT stream_id, count(*)::int AS added FROM given GROUP BY stream_id
), streams AS (
    INSERT INTO es_streams AS s (stream_id, version)
    SELECT stream_id, added FROM added ORDER BY stream_id COLLATE "C"
    ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version
    RETURNING s.stream_id, s.version
), numbered AS (
    SELECT g.*, s.version - a.added
                + row_number() OVER (PARTITION BY g.stream_id ORDER BY g.n) AS stream_version
    FROM given g JOIN added a USING (stream_id) JOIN streams s USING (stream_id)
), written AS (
    INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id,
                           occurred_at, recorded_at, envelope)
    SELECT event_id, stream_id, stream_version, type, client_id, occurred_at, recorded_at,
           jsonb_set(envelope, '{stream_version}', to_jsonb(stream_version))
    FROM numbered ORDER BY n
    RETURNING event_id, stream_id, stream_version, global_position
), outbox AS (
    INSERT INTO es_outbox (event_id, topic, message_key)
    SELECT event_id, topic, message_key FROM given ORDER BY n
)
SELECT event_id, stream_id, stream_version, global_position FROM written
"""
"""The shared store's lock of the streams (:data:`_CREATE_AND_LOCK_STREAMS`) and its write of
the events, their outbox rows and the streams' versions, as ONE statement (#12): each stream
is created or locked (``ON CONFLICT DO UPDATE`` locks an existing row as ``FOR UPDATE`` would,
in the same ``stream_id`` order) and set to its version after the events at once (a statement
cannot change a row twice, so the lock is the version's write); each event is numbered after
the version the stream had, in the order given, and its stored envelope says so. The rows are
one JSON argument (:func:`.json_rows.rows_argument`): no array checked in Python."""


def numbered_rows(events: Sequence[RecordedEvent], topic: str) -> list[tuple[Any, ...]]:
    """The rows of :data:`_APPEND_NUMBERED`'s argument (and of the collected writes' append,
    :func:`.collected_writes.add_appended`)."""
    return [
        (
            e.event_id,
            e.stream_id,
            e.type,
            e.client_id,
            e.occurred_at,
            e.recorded_at,
            e.model_dump(mode="json"),
            topic,
            e.subject_id,
        )
        for e in events
    ]


class _Events:
    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        # Its ids are its own: a write out of their order waits as before Round 24's no-wait
        # bound, which would otherwise cut every later lock wait of the unit short (#12).
        self._writes = PostgresEventWrites(conn, waits_out_of_order=True)
        self.appended = 0
        # What a COMMIT lost with its connection is checked by (#12): made before the write.
        self.appended_ids: list[uuid.UUID] = []

    async def find(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        return await self._writes.find_existing(event_ids)

    async def as_recorded(self, event_id: uuid.UUID) -> RecordedEvent | None:
        envelope = await self._conn.fetchval(
            "SELECT envelope FROM es_events WHERE event_id = $1", event_id
        )
        # a row of followup's own event store, validated when it was written; not upcast
        return stored_envelope(envelope) if envelope is not None else None

    async def task_creations_of(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        if not source_event_ids:
            return []
        # the type as a literal: the planner then uses the partial index (migration 011)
        rows = await self._conn.fetch(
            "SELECT envelope FROM es_events WHERE type = 'followup.task_created' "
            "AND envelope ->> 'causation_id' = ANY($1::text[])",
            [str(s) for s in dict.fromkeys(source_event_ids)],
        )
        # rows of followup's own event store, validated when they were written (#12)
        return [upcast(stored_envelope(r["envelope"])) for r in rows]

    async def lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        if not stream_ids:
            return {}
        # Created where missing and locked in ONE statement (#12: the shared store sends an
        # INSERT, then a SELECT ... FOR UPDATE): ON CONFLICT DO UPDATE locks an existing row
        # as FOR UPDATE would against every other writer and reader of it, and returns its
        # latest version; the rows are taken in the shared store's order (COLLATE "C").
        rows = await self._conn.fetch(_CREATE_AND_LOCK_STREAMS, sorted(set(stream_ids)))
        return {r["stream_id"]: r["version"] for r in rows}

    async def append_numbered(
        self, events: Sequence[RecordedEvent], *, topic: str
    ) -> list[tuple[RecordedEvent, StoredPosition]]:
        if not events:
            return []
        try:
            written = await self._conn.fetch(
                _APPEND_NUMBERED, rows_argument(numbered_rows(events, topic))
            )
        except asyncpg.UniqueViolationError as exc:  # an id taken
            raise ConcurrencyError(str(exc)) from exc
        by_id = {r["event_id"]: r for r in written}
        stored: list[tuple[RecordedEvent, StoredPosition]] = []
        for event in events:
            row = by_id[event.event_id]
            version = row["stream_version"]
            if event.stream_version != version:  # numbered by the statement
                event = event.model_copy(update={"stream_version": version})
            position = StoredPosition(
                event.event_id, event.stream_id, version, row["global_position"]
            )
            stored.append((event, position))
        self.appended += len(stored)
        self.appended_ids.extend(e.event_id for e in events)
        return stored

    async def append(self, events: Sequence[RecordedEvent], *, topic: str) -> list[StoredPosition]:
        for event in events:
            self._writes.stage(event, topic=topic, submission_hash=None)
        try:
            stored = await self._writes.commit()  # writes in the unit's transaction
        except asyncpg.UniqueViolationError as exc:  # an id or a stream version taken
            raise ConcurrencyError(str(exc)) from exc
        self.appended += len(stored)
        self.appended_ids.extend(e.event_id for e in events)
        return stored


class PostgresFollowupUnitOfWork:
    """A unit of work over ``conn`` within a transaction the caller opened (the rebuild's
    batches); :class:`PostgresUnitsOfWork` opens one per unit for the live processes.
    ``collect``: the console timeline rows, and the facts, journal rows, tasks and timers of
    the clients held, are written together by :meth:`write_collected`, which the opener
    calls before it commits (#12)."""

    def __init__(
        self,
        conn: PgConnection,
        client_lock_class: int = LIVE_CLIENT_LOCK_CLASS,
        *,
        collect: bool = False,
    ) -> None:
        self._conn = conn
        self._lock_class = client_lock_class
        self._collect = collect
        self._applied_unwritten: list[tuple[Any, ...]] = []
        """``collect``: the applied records of events the unit appended, written with the
        collected writes (:meth:`mark_appended_applied`)."""
        self._creations_ahead: dict[uuid.UUID, list[RecordedEvent]] = {}
        """Source event id → the recorded creations it caused, read ahead by
        :meth:`hold_clients_of` (valid while :attr:`events` has appended nothing since)."""
        self._appended_at_read = 0
        self._appends_unwritten: list[tuple[str, list[tuple[Any, ...]]]] = []
        """(source, :func:`numbered_rows`) of each :meth:`append_applied` left for the
        collected writes."""
        self._savepoints = 0
        """Savepoints set so far (each one's name is its number: :meth:`savepoint`)."""
        self._product_lock_class = (
            LIVE_PRODUCT_LOCK_CLASS
            if client_lock_class == LIVE_CLIENT_LOCK_CLASS
            else REBUILD_PRODUCT_LOCK_CLASS
        )
        self._products_locked: set[str] = set()
        """Products whose lock this transaction holds (:meth:`lock_products`)."""
        self._locked: set[str] = set()
        """Clients whose lock this transaction holds: a transaction-level advisory lock is
        held until the end, so a batch takes each client's once, not once per event (#12)."""
        self.clients = _Clients(conn, self._locked, collect=collect)
        self.tasks = _Tasks(conn, self._locked, collect=collect)
        self.timers = _Timers(conn, self.tasks, collect=collect)
        self.holdings = _Holdings(conn, keep_ratings=collect)
        self.activity = _Activity(conn, collect_timeline=collect, clients=self.clients)
        self.privacy = _Privacy(conn)
        self.events = _Events(conn)
        self.journal = _Journal(
            conn,
            self.activity,
            self.clients,
            self.tasks,
            self.timers,
            collect=collect,
            holdings=self.holdings,
        )

    async def lock_client(self, client_id: str) -> None:
        if client_id in self._locked:
            return
        await lock_client(self._conn, client_id, self._lock_class)
        self._locked.add(client_id)

    async def lock_products(self, product_ids: Collection[str]) -> None:
        wanted = sorted(set(product_ids) - self._products_locked)
        if not wanted:
            return
        await lock_products(self._conn, wanted, self._product_lock_class)
        self._products_locked.update(wanted)

    async def try_lock_products(self, product_ids: Collection[str]) -> bool:
        wanted = sorted(set(product_ids) - self._products_locked)
        if not wanted:
            return True
        if not await try_lock_products(self._conn, wanted, self._product_lock_class):
            return False
        self._products_locked.update(wanted)
        return True

    def owns_client(self, client_id: str) -> bool:
        return True

    async def try_lock_client(self, client_id: str) -> bool:
        if client_id in self._locked:
            return True
        locked = await try_lock_client(self._conn, client_id, self._lock_class)
        if locked:
            self._locked.add(client_id)
        return locked

    async def hold_clients_of(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        pairs = [(e.client_id, p.source if p else e.source) for e, p in events if e.client_id]
        clients = sorted({c for c, _ in pairs} - self._locked)
        if clients:
            # in one order (by id), so two units holding several clients cannot deadlock
            await lock_clients(self._conn, clients, self._lock_class)
            self._locked.update(clients)
        # The reads ahead in ONE statement after the locks' own (#12: one round trip, not
        # three): a statement reads the snapshot taken when it starts, so the locks must be
        # held before it starts for it to see what a unit they waited for committed.
        # (After a batch's mark_applied_all that locked and read them, nothing is left to
        # read: no statement.)
        asked = self._asked(events, self._locked)
        await self._before_reading(asked)
        self._keep_read(asked, await read_ahead(self._conn, asked))

    async def hold_clients(self, client_ids: Sequence[str]) -> None:
        wanted = sorted(set(client_ids))
        clients = [c for c in wanted if c not in self._locked]
        if clients:
            # in one order (by id), as hold_clients_of: no two units deadlock on them
            await lock_clients(self._conn, clients, self._lock_class)
            self._locked.update(clients)
        # After the locks' statement (ADR-0013), in one statement (#12)
        asked = Asked(
            facts_of=self.clients.unread(wanted),
            open_tasks_of=self.tasks.unread_open(wanted),
            holdings_of=self.holdings.unread_holdings(wanted),
        )
        if asked:
            await self._before_reading(asked)
            self._keep_read(asked, await read_ahead(self._conn, asked))

    def _asked(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]], held: Set[str]
    ) -> Asked:
        """What :meth:`hold_clients_of` reads ahead for ``events``, the clients ``held``
        locked: what is not kept yet."""
        pairs = [(e.client_id, p.source if p else e.source) for e, p in events if e.client_id]
        of_clients = sorted({c for c, _ in pairs})
        # What the events the rules decide on caused, with the rest (#12: the look-up that
        # follows, :meth:`look_up_caused_by`, was a statement of its own): held, so what
        # their clients' tasks and creations are stays what is read until the unit writes.
        deciding = [e.event_id for e, _ in events if e.client_id and e.type in HANDLED_EVENT_TYPES]
        # And what D-15 reads (#12): the ratings of the products the unit's events name
        # (:meth:`_Holdings.expect`), the holdings of the clients whose sales or reassessments
        # are applied (their reads were a statement per batch and one per such event).
        holders = {e.client_id for e, _ in events if e.client_id and e.type in _READS_HOLDINGS}
        return Asked(
            ratings_of=self.holdings.unread_ratings(),
            holdings_of=self.holdings.unread_holdings(holders),
            facts_of=self.clients.unread(of_clients, held),
            open_tasks_of=self.tasks.unread_open(of_clients, held),
            places_of=self.journal.unread(pairs),
            tasks_caused_by=self.tasks.unread_caused(deciding),
            creations_caused_by=[
                s for s in dict.fromkeys(deciding) if s not in self._creations_ahead
            ],
        )

    async def _before_reading(self, asked: Asked) -> None:
        if asked.open_tasks_of or asked.tasks_caused_by:
            await self.tasks.write_unwritten()  # the read must find the tasks saved so far
        if self.events.appended != self._appended_at_read:
            self._creations_ahead.clear()  # the unit recorded some since: read them again

    def _keep_read(self, asked: Asked, found: ReadAhead) -> None:
        self.clients.keep_read(asked.facts_of, found.facts)
        self.tasks.keep_open(found.open_tasks)
        self.journal.keep_read(asked.places_of, found.places)
        self.tasks.keep_caused(asked.tasks_caused_by, found.caused.tasks)
        self._keep_creations(asked.creations_caused_by, found.caused.creations)
        self.holdings.keep_read(found.ratings, found.holdings)

    def _keep_creations(
        self, source_event_ids: Sequence[uuid.UUID], found: Sequence[RecordedEvent]
    ) -> None:
        """Keep every recorded creation these events caused (``found``: all of them), as the
        store holds them while the unit appends nothing (:attr:`_appended_at_read`)."""
        for source in source_event_ids:
            self._creations_ahead[source] = []
        for creation in found:
            self._creations_ahead[uuid.UUID(creation.causation_id or "")].append(creation)
        self._appended_at_read = self.events.appended

    def _creations_kept(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent] | None:
        """The recorded creations of these events read ahead, None unless all of them were
        read and the unit appended nothing since."""
        if self.events.appended != self._appended_at_read:
            return None
        kept = self._creations_ahead
        if not all(s in kept for s in source_event_ids):
            return None
        return [c for s in source_event_ids for c in kept[s]]

    async def look_up_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        tasks_of = self.tasks.unread_caused(source_event_ids)
        creations_of = list(dict.fromkeys(source_event_ids))
        if not creations_of:
            return []
        kept = None if tasks_of else self._creations_kept(creations_of)
        if kept is not None:  # read ahead with the clients (hold_clients_of)
            return kept
        if tasks_of:
            await self.tasks.write_unwritten()  # the read must find the tasks saved so far
        # One statement where two were (#12): the tasks and the creations these events caused.
        found = await read_caused_by(self._conn, tasks_of, creations_of)
        self.tasks.keep_caused(tasks_of, found.tasks)
        return found.creations

    async def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        return await read_models.mark_applied(self._conn, event, position)

    async def mark_applied_all(
        self,
        events: Sequence[tuple[RecordedEvent, SourcePosition | None]],
        *,
        locking: Sequence[bool] = (),
    ) -> set[uuid.UUID]:
        self.holdings.expect(events)  # their products' ratings read together, if asked
        lockers = (
            [
                e.client_id if flag and e.client_id not in self._locked else None
                for (e, _), flag in zip(events, locking, strict=True)
            ]
            if locking
            else []
        )
        clients = sorted({c for c in lockers if c is not None})
        if not clients:
            fresh = await read_models.mark_all_applied(self._conn, events)
            self._expect_fresh(events, fresh)
            return fresh
        # The locks in the records' statement (#12: a round trip less per batch), taken after
        # every record is made and in hold_clients_of's order (ADR-0013): see the SQL. And
        # what hold_clients_of would read ahead of the flagged events' clients, read in the
        # same statement after the locks, through a function whose query takes its own
        # snapshot then (#12, followup migration 018): kept only if every flagged event was
        # recorded now (its clients all held: hold_clients_of then sends nothing).
        flagged = [
            (e, p) for (e, p), flag in zip(events, locking, strict=True) if flag and e.client_id
        ]
        asked = self._asked(flagged, self._locked | set(clients))
        await self._before_reading(asked)
        fresh, found = await mark_applied_locking_reading(
            self._conn,
            events,
            lockers,
            clients,
            self._lock_class,
            asked,
            [e.event_id for e, _ in flagged],
        )
        self._locked.update(
            c for (e, _), c in zip(events, lockers, strict=True) if c and e.event_id in fresh
        )
        if found is not None:
            self._keep_read(asked, found)
        self._expect_fresh(events, fresh)
        return fresh

    def _expect_fresh(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]], fresh: Set[uuid.UUID]
    ) -> None:
        """The products to read ahead the ratings of: those the events recorded now name (a
        batch of redeliveries reads none)."""
        self.holdings.expected = set()
        self.holdings.expect([(e, p) for e, p in events if e.event_id in fresh])

    async def mark_appended_applied(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        if not self._collect:
            await self.mark_applied_all(events)
            return
        # With the collected writes (#12: a statement less per creating batch): nothing in
        # the unit reads these records, and they commit with the events or not at all.
        self._applied_unwritten += [read_models.applied_row(e, p) for e, p in events]

    async def append_applied(
        self, events: Sequence[RecordedEvent], *, topic: str, source: str
    ) -> None:
        if not self._collect:
            stored = await self.events.append_numbered(events, topic=topic)
            await self.mark_appended_applied(
                [(e, SourcePosition(source, p.global_position)) for e, p in stored]
            )
            return
        if not events:
            return
        # With the collected writes (#12: the creation's statement was a round trip of its
        # own, waited for, in each creating batch): the streams locked, the events numbered
        # and written with their outbox rows, and their applied records with the positions
        # written, as parts of that one statement. Nothing in the unit reads them before.
        self._appends_unwritten.append((source, numbered_rows(events, topic)))
        self.events.appended += len(events)
        self.events.appended_ids.extend(e.event_id for e in events)

    async def write_collected(self) -> None:
        """Write what the unit collected to write together (before it commits): in one
        statement (#12, :mod:`.collected_writes`)."""
        statement = CollectedStatement()
        add_clients(statement, *self.clients.take_unwritten())
        add_journal(statement, self.journal.take_unwritten())
        add_tasks(statement, self.tasks.take_unwritten())
        syncs = self.timers.take_unwritten()
        rounds = timer_sync_rounds(syncs) if syncs else []
        if len(rounds) == 1:
            add_timers(statement, rounds[0])
        elif rounds:  # a task synced twice: in rounds, in turn (the tasks need not be written)
            await self._conn.executemany(read_models.SYNC_TIMERS, rounds)
        add_timeline(statement, self.activity.take_timeline())
        add_console(statement, self.activity.take_console())
        add_visits(statement, self.activity.take_visits())
        add_service_loop(statement, self.activity.take_service_loop())
        add_applied(statement, self._applied_unwritten)
        self._applied_unwritten = []
        appends, self._appends_unwritten = self._appends_unwritten, []
        for source, rows in appends:
            add_appended(statement, rows, source)
        if statement.sql is None:
            return
        try:
            await self._conn.execute(statement.sql, *statement.args)
        except asyncpg.UniqueViolationError as exc:
            if not appends:
                raise
            raise ConcurrencyError(str(exc)) from exc  # an appended event's id taken

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        held = set(self._locked)
        kept = dict(self.clients.kept)
        unwritten = set(self.clients.unwritten)
        closure_reasons = dict(self.clients.closure_reasons)
        ratings = self.holdings.snapshot()
        held_products = self.holdings.snapshot_held()
        tasks = self.tasks.snapshot()
        timer_syncs = list(self.timers.unwritten)
        latest = dict(self.journal.latest)
        journal_rows = list(self.journal.unwritten)
        applied_rows = list(self._applied_unwritten)
        appends = list(self._appends_unwritten)
        appended_ids = len(self.events.appended_ids)
        timeline = self.activity.timeline
        collected = list(timeline) if timeline is not None else None  # a copy: a
        # re-projection removes rows from its middle
        console = list(self.activity.console)
        visits = list(self.activity.visits)
        service_loop = list(self.activity.service_loop)
        # Not asyncpg's nested ``transaction()``: it refuses to run in a transaction it did
        # not begin, and the live units begin theirs with the swap lock (#12,
        # :class:`PostgresUnitsOfWork`). The same statements asyncpg sends for one.
        self._savepoints += 1
        name = f"branchline_unit_{self._savepoints}"
        try:
            await self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                await self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                raise
            await self._conn.execute(f"RELEASE SAVEPOINT {name}")
        except BaseException:
            # Rolling back to the savepoint releases the locks taken since it was set, and
            # what the unit kept or collected is what it had, as the tables' rows are (rows
            # collected before it and written within it are rolled back: written again later).
            self._locked.clear()
            self._locked.update(held)
            self.clients.kept = kept
            self.clients.unwritten = unwritten
            self.clients.closure_reasons = closure_reasons
            self.holdings.ratings = ratings
            self.holdings.held = held_products
            self.tasks.restore(tasks)
            self.timers.unwritten = timer_syncs
            self.journal.latest = latest
            self.journal.unwritten = journal_rows
            self._applied_unwritten = applied_rows
            self._appends_unwritten = appends
            del self.events.appended_ids[appended_ids:]
            if timeline is not None and collected is not None:
                timeline[:] = collected
            self.activity.console[:] = console
            self.activity.visits[:] = visits
            self.activity.service_loop = service_loop
            raise


def _closed(conn: PgConnection) -> bool:
    """Whether the pooled connection has closed (a closed one is taken back by the pool at
    once, and its proxy then refuses every call: closed too)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


class PostgresUnitsOfWork:
    """Units of work on the live read models: one pooled connection and transaction each,
    the swap lock held shared from the start; ``on_commit`` wakes the outbox relay of this
    process after a commit that appended events."""

    def __init__(
        self,
        pool: PgPool,
        *,
        client_lock_class: int = LIVE_CLIENT_LOCK_CLASS,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._lock_class = client_lock_class
        self._on_commit = on_commit

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        lost: BaseException | None = None
        async with self._pool.acquire() as conn:
            session = conn.get_server_pid()
            # Not asyncpg's ``transaction()``: ``BEGIN`` travels with the swap lock, one
            # round trip less per unit (#12), and the unit is ended here as asyncpg would end
            # it: rolled back if it raises (or is cancelled), else committed.
            # Generic plans (#12): the batch's read ahead was planned again at every
            # run (its custom plan estimated cheaper for one-element arrays; planning cost
            # more PostgreSQL CPU than running it); every other statement of a unit runs
            # its generic plan after five runs already (pg_prepared_statements).
            try:
                await conn.execute(BEGIN_HOLDING_SWAP_LOCK)
                unit = PostgresFollowupUnitOfWork(conn, self._lock_class, collect=True)
                yield unit
                await unit.write_collected()
            except BaseException:
                try:
                    await conn.execute("ROLLBACK")  # a warning only if BEGIN itself failed
                except Exception as rolling_back:
                    # The connection lost on the way: the server rolls the transaction back
                    # when the session ends, so the unit's own exception stays the answer (a
                    # refusal, or a unit left unchanged), not the lost connection's (#12).
                    if not (lost_in_flight(rolling_back) and _closed(conn)):
                        raise
                raise
            try:
                await conn.execute("COMMIT")
            except Exception as exc:
                if not lost_in_flight(exc):
                    raise
                lost = exc
        if lost is not None:
            if not unit.events.appended_ids:
                # Only read models changed, or nothing: no id to ask the store by (asking by
                # the transaction's id would cost every unit a round trip to learn it, the
                # worker's included). Not "nothing was stored": read model rows may have been
                # (a consumer retries it as before; an API answers 503 outcome-unknown).
                raise CommitOutcomeUnknown(
                    "the connection to the database was lost while a unit of work that "
                    "changed only read models was being committed"
                ) from lost
            # On a fresh connection, the lost one back in the pool: committed, the unit
            # ends as if it had heard (an RM's action answered as done, not "nothing stored").
            await after_lost_commit(self._pool, unit.events.appended_ids, lost, session=session)
        if unit.events.appended and self._on_commit is not None:
            self._on_commit()
