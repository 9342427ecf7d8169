"""The PostgreSQL ledger: appends under one lock so positions are gap-free and each entry's
``prev_hash`` is the hash of the entry before it; queries; cached Merkle subtrees; prunes.

Appends (events from Kafka, ``audit.read`` from the API, ``audit.pruned`` from a prune) all go
through :meth:`PostgresLedger.append`, in one transaction holding a transaction-level advisory
lock: the next position and ``prev_hash`` are read and written with nobody in between, commit
order equals position order, and the complete subtrees the new entries finish are cached in
the same transaction (:mod:`branchline_audit.domain.subtrees`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pgproto.pgproto import UUID as PgUUID

from branchline_audit.adapters.altered import ALTERED_ROW, READ_COLUMNS, with_neighbours
from branchline_audit.adapters.relationships import SignedLeafCheck, ledger_facts
from branchline_audit.adapters.scan import scan_rows
from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    ChainEntry,
    chain_hash,
    entry_encoder,
    format_appended_at,
)
from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.domain.merkle import RangeHasher
from branchline_audit.domain.personal import ClientDataState, restriction_of
from branchline_audit.domain.records import (
    index_columns,
    index_row,
)
from branchline_audit.domain.relationships import LedgerFact
from branchline_audit.domain.staff import (
    EmploymentEnd,
    GiftClient,
    StaffRetentionState,
    staff_fact_of,
)
from branchline_audit.domain.subtrees import (
    STRIDE,
    NodeKey,
    Requirements,
    SubtreeSource,
    build_subtrees,
    required,
    subtree_work,
)
from branchline_audit.domain.verification import StoredEntry, reader_entries
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection
from branchline_shared.postgres.statements import Placeholders, prefix_range

__all__ = [
    "LEDGER_LOCK_KEY",
    "LedgerFilters",
    "PostgresLedger",
    "UncheckedFacts",
    "UnstorableEvent",
]

LEDGER_LOCK_KEY = 0x6C6564676572  # "ledger"
# The trail's readers (pages, an entry, prune candidates) read the three times in their binary
# form, which no time fails to decode (asyncpg refuses a year past 9999 or before 1, and reads
# an infinity as a naive extreme), and are told in words which of them holds a time no append
# writes: the row was altered behind the ledger's back, and the reader refuses it by name
# (StoredEntry.unwritten, D-11) instead of failing with the time's error (#12).
_READ_COLUMNS = READ_COLUMNS


_APPENDED = (
    "position",
    "event_id",
    "event",
    "event_type",
    "client_id",
    "actor_id",
    "branch_id",
    "occurred_at",
    "appended_at",
    "prev_hash",
    "hash",
    "canonical",
)
# Everything an append reads, after the lock and before its COPY, in one statement (#12):
# which of its events the ledger holds already ('s': event_id), its head ('h': position as
# idx, hash), how many nodes each cached level holds ('c': level, count as idx), and the
# stored inputs of the subtrees it may complete ('n': level 0 for entry hashes by leaf index,
# position - 1; else cached nodes). Those inputs are what lies past the last complete parent
# of each level: the entries from the first leaf of the first level-$3 node not cached, and
# at each level the nodes from the first child of its parent level's first node not cached
# (at most 2**$3 - 1 per level once the cache is complete; every level is read this way also
# when nodes are missing, so the append back-fills them). The append's own leaves it has at
# hand, so nothing is read back after the COPY.
_BEFORE_APPEND = (
    "WITH have AS (SELECT l.level, (SELECT max(n.node_index) + 1 FROM audit_merkle_nodes n "
    "WHERE n.level = l.level) AS have FROM unnest($2::smallint[]) AS l(level)) "
    "SELECT 's' AS kind, event_id, NULL::smallint AS level, NULL::bigint AS idx, "
    "NULL::bytea AS hash FROM audit_ledger WHERE event_id = ANY($1::uuid[]) "
    "UNION ALL "
    "(SELECT 'h', NULL, NULL, position, hash FROM audit_ledger ORDER BY position DESC LIMIT 1) "
    "UNION ALL "
    "SELECT 'c', NULL, level, have, NULL FROM have WHERE have IS NOT NULL "
    "UNION ALL "
    "SELECT 'n', NULL, 0, position - 1, hash FROM audit_ledger WHERE position > "
    "(coalesce((SELECT have FROM have WHERE level = $3::int), 0) << $3::int) "
    "UNION ALL "
    # A range of the primary key per level (OFFSET 0 keeps the subquery from being pulled
    # up into a join, which the planner made a hash join over every cached node).
    "SELECT 'n', NULL, n.level, n.node_index, n.hash FROM have h, LATERAL "
    "(SELECT level, node_index, hash FROM audit_merkle_nodes WHERE level = h.level - $3::int "
    "AND node_index >= (coalesce(h.have, 0) << $3::int) OFFSET 0) n"
)
# Every cached level a ledger can reach (positions are below 2**63).
_ALL_CACHED_LEVELS = list(range(STRIDE, 63, STRIDE))
# An append's transaction and its lock in one round trip (a simple query of two statements;
# the lock is still a statement of its own, so the read after it takes a snapshot after the
# wait, #12).
APPEND_WRITTEN_TABLES = (
    # (table, a column it is written through): every table an append can write. The ledger
    # (every append's ``COPY``), the Merkle nodes an append completes and the store positions
    # of the events it places (:data:`_TAIL`, not every append), a restriction's client and a
    # member of staff's retention facts (only the events that carry them).
    ("audit_ledger", "event_id"),
    ("audit_merkle_nodes", "level"),
    ("audit_source_positions", "source"),
    ("audit_restricted_clients", "client_id"),
    ("audit_staff_employment_ends", "staff_id"),
    ("audit_staff_gift_clients", "staff_id"),
)


def _write_locks_then(statement: str) -> str:
    """``statement`` preceded, in the same statement, by the write lock (``ROW EXCLUSIVE``) of
    each of :data:`APPEND_WRITTEN_TABLES`: a data-modifying CTE per table inserting no row (no
    row trigger fires, nothing is written). Fixed identifiers, no value in the SQL text."""
    ctes = ", ".join(
        f"w{n} AS (INSERT INTO {t} ({c}) SELECT {c} FROM {t} WHERE false RETURNING 1)"  # noqa: S608 - fixed identifiers
        for n, (t, c) in enumerate(APPEND_WRITTEN_TABLES)
    )
    return f"WITH {ctes} {statement}"


LEDGER_LOCK_PROBE = (_write_locks_then("SELECT pg_advisory_xact_lock($1)"), LEDGER_LOCK_KEY)
"""The audit consumer's probe (:class:`~branchline_shared.postgres.pool.PromptProbe`), in one
statement: the ledger's lock every append takes first, held for the statement only, and the
write lock of every table an append can write (:data:`APPEND_WRITTEN_TABLES`; an ``INSERT``
of no row takes the ``ROW EXCLUSIVE`` lock a ``COPY`` or ``INSERT`` takes and writes nothing;
no row trigger fires). A transaction holding the ledger's lock (a long checkpoint, a repair by
hand) or a lock on one of those tables that an append waits for (``SHARE``: a plain ``CREATE
INDEX``) makes the appends that write it wait, and the probe too (#12, Round 32)."""

_BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({LEDGER_LOCK_KEY})"


_TAIL = (
    # The Merkle nodes the new entries complete and where they came from, in one statement
    # of bound arrays (D-11 house rule: no value in the SQL text, #12); the positions in the
    # order given, so that ``ON CONFLICT DO NOTHING`` keeps the first of a repeated one.
    "WITH nodes AS (INSERT INTO audit_merkle_nodes (level, node_index, hash) "
    "SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])) "
    "INSERT INTO audit_source_positions (source, global_position, event_id, position) "
    "SELECT * FROM unnest($4::text[], $5::bigint[], $6::uuid[], $7::bigint[]) "
    "ON CONFLICT DO NOTHING"
)


def _tail(
    nodes: Sequence[tuple[int, int, bytes]],
    placed: Sequence[tuple[int, uuid.UUID, SourcePosition]],
) -> list[Any] | None:
    """The bound values of :data:`_TAIL` (``nodes`` as level, index, hash; ``placed`` as
    ledger position, event id, store position, grouped by store in the order first met),
    None when there is neither."""
    if not nodes and not placed:
        return None
    by_source: dict[str, list[tuple[int, uuid.UUID, SourcePosition]]] = {}
    for item in placed:
        by_source.setdefault(item[2].source, []).append(item)
    ordered = [item for items in by_source.values() for item in items]
    return [
        [int(level) for level, _, _ in nodes],
        [int(index) for _, index, _ in nodes],
        [bytes(hash_) for _, _, hash_ in nodes],
        [at.source for _, _, at in ordered],
        [int(at.global_position) for _, _, at in ordered],
        [event_id for _, event_id, _ in ordered],
        [int(position) for position, _, _ in ordered],
    ]


def _subtrees(
    size: int, have: Mapping[int, int], tree: Mapping[tuple[int, int], bytes]
) -> list[tuple[int, int, bytes]]:
    """Every cached-level subtree now complete (missing ones back-filled), given how many
    nodes each cached level holds (``have``) and the inputs: entry hashes (level 0, by leaf
    index) and cached nodes (#12)."""
    work = subtree_work(size, have)
    if not work.build:
        return []
    entry_hashes = {idx: value for (level, idx), value in tree.items() if level == 0}
    return build_subtrees(work, entry_hashes, tree)


def family_range(prefix: str) -> tuple[str, str]:
    """The byte range ``[low, high)`` holding exactly the types that start with ``prefix``, a
    family's prefix (``followup.``): it ends in ``.``, so ``high`` is it with ``/``, the next
    byte, in its place, and no type inside the range lacks the prefix."""
    if not prefix.endswith("."):
        raise ValueError(f"a family prefix ends with '.': {prefix!r}")
    return prefix_range(prefix)


def _where(filters: LedgerFilters, first_param: int) -> tuple[str, list[Any]]:
    """The SQL condition (and its bound values, numbered from ``first_param``) of ``filters``."""
    clauses: list[str] = []
    param = Placeholders(first_param)

    for column, value in (
        ("client_id", filters.client_id),
        ("actor_id", filters.actor_id),
        ("branch_id", filters.branch_id),
    ):
        if value is not None:
            clauses.append(f"{column} = {param(value)}")
    if filters.type is not None:
        if filters.type.endswith(".*"):
            low, high = family_range(filters.type[:-1])
            # Byte-order operators, which the text_pattern_ops index (migration 005) serves
            # in any collation and on a generic plan; LIKE with a bound pattern does not (#12).
            clauses.append(f"event_type ~>=~ {param(low)} AND event_type ~<~ {param(high)}")
        else:
            # Equality as a byte range of one value (the same rows: text equality is byte
            # equality in a deterministic collation), so that a generic plan, blind to the
            # value, estimates it as the family's range and reads the index too; as `=`, it
            # took the primary key and filtered once rows got smaller (migration 006, #12).
            value = param(filters.type)
            clauses.append(f"event_type ~>=~ {value} AND event_type ~<=~ {value}")
    if filters.occurred_from is not None:
        clauses.append(f"occurred_at >= {param(filters.occurred_from)}")
    if filters.occurred_to is not None:
        clauses.append(f"occurred_at < {param(filters.occurred_to)}")
    return (" AND ".join(clauses) or "true"), param.values


def entries_statement(filters: LedgerFilters) -> tuple[str, list[Any]]:
    """A trail page's SQL and the bound values of ``filters`` (from ``$4``); ``$1`` is the
    position read after, ``$2`` the page size, ``$3`` the last position read."""
    where, params = _where(filters, 4)
    sql = (
        f"SELECT {_READ_COLUMNS} FROM audit_ledger "  # noqa: S608 - fixed columns, bound values
        f"WHERE position > $1 AND position <= $3 AND {where} ORDER BY position LIMIT $2"
    )
    # With the links beside the page that it does not hold (the first entry's, the last's,
    # a filtered page's entries'), checked by ServedCheck (D-11, #12).
    return with_neighbours(sql), params


def first_altered_statement(filters: LedgerFilters) -> tuple[str, list[Any]]:
    """The SQL of an export's check for an altered entry and the bound values of ``filters``
    (from ``$1``). Its condition holds :data:`ALTERED_ROW` as a conjunct, which implies the
    predicate of the partial index ``audit_ledger_altered`` (migration 008): the planner
    reads that index, which holds only the altered rows (none in a sound ledger), and filters
    them, rather than the export's whole range (#12)."""
    where, params = _where(filters, 1)
    sql = (
        f"SELECT {_READ_COLUMNS} FROM audit_ledger "  # noqa: S608 - fixed columns, bound values
        f"WHERE ({ALTERED_ROW}) AND {where} ORDER BY position LIMIT 1"
    )
    return sql, params


class UnstorableEvent(ValueError):
    """An event the ledger does not append: nothing is appended (the audit consumer
    dead-letters it with the reason, as any event that fails alone)."""


_NUL_ESCAPE = b"\\u0000"
"""How JCS writes U+0000 in a string; also part of the text ``\\u0000``, so only a hint."""


def _holds_nul(node: Any) -> bool:
    """Whether a string or key anywhere in ``node`` holds U+0000. The event column, when it
    held the event, refused it (jsonb cannot hold it); since the event is stored once in
    its bytes (migration 006, #12) the ledger refuses it itself, so that the SQL readers
    (``audit_entry_event``: reconcile, retention's trigger, relationship facts) can read
    every entry (iterative: a deep event cannot exhaust the stack)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if any("\x00" in key for key in item if isinstance(key, str)):
                return True
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _event_uuid(text: str) -> uuid.UUID:
    """The event id's UUID: asyncpg's own type (a ``uuid.UUID``) parses a text of hex digits
    and hyphens in C, about a tenth of ``uuid.UUID``'s cost, to the value ``uuid.UUID`` gives
    it, and is encoded for PostgreSQL without a Python call; the other forms ``uuid.UUID``
    accepts (braces, ``urn:uuid:``) are left to it, as are its refusals (#12)."""
    try:
        return PgUUID(text)
    except ValueError:
        return uuid.UUID(text)


def stored_page(rows: Sequence[asyncpg.Record]) -> list[StoredEntry]:
    """Rows read with :data:`_READ_COLUMNS` (their columns in that order): their times as
    asyncpg would read them, or the entry marked as altered (:attr:`StoredEntry.unwritten`),
    an append time's text made once per distinct instant of the page (#12)."""
    return reader_entries(rows)


_EXPIRED_CANDIDATES = (
    f"SELECT {_READ_COLUMNS} FROM audit_ledger "  # noqa: S608
    "WHERE pruned_at IS NULL AND appended_at < $1 AND (appended_at, position) > ("
    "coalesce((SELECT p.appended_at FROM audit_ledger p WHERE p.position = $2), "
    "'-infinity'::timestamptz), $2) "
    "ORDER BY audit_ledger.appended_at, audit_ledger.position LIMIT $3"
)
_EXPIRED_CANDIDATES_OF = _EXPIRED_CANDIDATES.replace(
    " ORDER BY ",
    " AND (client_id IS NULL OR client_id IN (SELECT unnest($4::text[]))) ORDER BY ",
)
"""The same page without the entries of clients not in $4 (#12): a client whose relationship
has not ended before the latest cutoff (an active one above all) has nothing due, and its old
entries were read, decoded and dropped by every run. A hashed subplan: one probe per row,
whatever the number of clients, on the custom and the generic plan."""
"""Retention's page of candidates (D-11, #12), keyset-paged in the order of the partial index
audit_ledger_appended (appended_at, position) WHERE pruned_at IS NULL: both bounds are index
conditions, so a page reads its candidates and one primary-key probe (the previous page's last
entry, whose appended_at is the key to resume from) on any plan. Paging by position instead
walked the primary key and filtered on appended_at: on the generic plan asyncpg switches to
after five runs, a run's last page read on to the ledger's end. The cursor is a position, not
a time, because an entry altered behind the ledger's back may hold a time asyncpg cannot read
(a BC year): the probe reads it in the database. Entries appended with equal or out-of-order
times are ordered by position within a time, so every one comes exactly once. The ORDER BY names
the table's columns: the bare name is the select list's (timestamptz_send) bytes."""


_ONE_ENTRY = with_neighbours(
    f"SELECT {_READ_COLUMNS} FROM audit_ledger WHERE position = $1"  # noqa: S608
)
"""One entry with the hash of the entry before it and the ``prev_hash`` of the one after:
an entry rewritten with its own hash recomputed is refused when served alone (#12)."""


class UncheckedFacts(RuntimeError):
    """A ledger asked for legal holds or relationship ends before it was given the check of
    their signed checkpoint (:meth:`PostgresLedger.hold_facts_to`): a wiring error, raised
    before anything is read, never a read that goes unchecked (D-11, #12)."""

    rule = "D-11"

    def __init__(self) -> None:
        super().__init__(
            "D-11: this ledger reads legal holds and relationship ends only held against "
            "their signed checkpoint, and it was given no check: build it with "
            "branchline_audit.bootstrap.audit_context (its .ledger), or hand it "
            "application.signed_leaves.refuse_unsigned with hold_facts_to"
        )


class PostgresLedger:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self._signed: SignedLeafCheck | None = None

    def hold_facts_to(self, signed: SignedLeafCheck) -> None:
        """Hold every read of :meth:`facts` and :meth:`append_decided` (legal holds,
        relationship ends) against its signed checkpoint with ``signed`` (D-11, #12): the
        composition root (``bootstrap.audit_context``) hands it the check of
        ``application/signed_leaves.py``. Until then both refuse (:class:`UncheckedFacts`):
        a ledger built another way (a tool's, a test's) cannot leave the check out."""
        self._signed = signed

    def _facts_check(self) -> SignedLeafCheck:
        if self._signed is None:
            raise UncheckedFacts
        return self._signed

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        return self._pool

    # ---------------------------------------------------------------- appending

    async def append(
        self,
        events: Sequence[dict[str, Any]],
        *,
        now: datetime,
        positions: Mapping[uuid.UUID, SourcePosition] | None = None,
    ) -> int:
        """Append events (envelope dicts) not yet in the ledger; returns how many were new.

        Duplicates (by event id, within the batch or already stored) are skipped: Kafka may
        deliver an event more than once, the ledger holds it once. ``positions`` (by event id:
        where the event's store put it) are recorded with the new entries, for reconcile.

        One transaction in five round trips (#12): ``BEGIN`` with the lock, the read before
        the COPY, the COPY, the Merkle nodes the entries complete and their source positions
        (:data:`_TAIL`, bound values: none pasted into the text, Round 29), ``COMMIT`` (a
        restriction, when there is one, a statement of its own). A failure anywhere rolls
        all of it back, as asyncpg's managed transaction does.
        """
        async with self._pool.acquire() as conn:
            await conn.execute(_BEGIN_LOCKED)
            try:
                new, tail = await self._write_locked(conn, events, now=now, positions=positions)
                if tail is not None:
                    await conn.execute(_TAIL, *tail)
                await conn.execute("COMMIT")
            except BaseException:
                # As asyncpg's managed transaction; should the ROLLBACK fail too, the error
                # raised is still the first, and the pool's release rolls back or drops the
                # connection.
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
        return len(new)

    async def append_locked(
        self,
        conn: PgConnection,
        events: Sequence[dict[str, Any]],
        *,
        now: datetime,
        positions: Mapping[uuid.UUID, SourcePosition] | None = None,
    ) -> list[int]:
        """Append inside the caller's transaction (takes the ledger lock); new positions."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
        new, tail = await self._write_locked(conn, events, now=now, positions=positions)
        if tail is not None:
            await conn.execute(_TAIL, *tail)
        return new

    async def _write_locked(
        self,
        conn: PgConnection,
        events: Sequence[dict[str, Any]],
        *,
        now: datetime,
        positions: Mapping[uuid.UUID, SourcePosition] | None,
    ) -> tuple[list[int], list[Any] | None]:
        """Under the ledger lock, in the caller's transaction: write the new entries (and a
        restriction one of them makes). Returns their positions and the values of
        :data:`_TAIL` the caller sends to finish the append, before ``COMMIT`` (None when
        there is nothing more): their source positions and the Merkle nodes they
        complete."""
        columns = [index_row(e, _event_uuid) for e in events]
        # After the lock (a statement of its own: a statement's snapshot is taken before it
        # waits), one statement reads all the append needs (#12).
        found = await conn.fetch(
            _BEFORE_APPEND, [c[0] for c in columns], _ALL_CACHED_LEVELS, STRIDE
        )
        stored: set[uuid.UUID] = set()
        position, prev = 0, GENESIS_PREV_HASH
        have: dict[int, int] = {}
        tree: dict[tuple[int, int], bytes] = {}
        for kind, event_id, level, idx, hash_ in found:
            if kind == "s":
                stored.add(event_id)
            elif kind == "h":
                position, prev = idx, bytes(hash_)
            elif kind == "c":
                have[level] = idx
            else:
                tree[(level, idx)] = bytes(hash_)
        encode = entry_encoder(format_appended_at(now))
        rows: list[tuple[Any, ...]] = []
        new_events: list[dict[str, Any]] = []
        for event, index in zip(events, columns, strict=True):
            event_id = index[0]
            if event_id in stored:
                continue
            stored.add(event_id)
            position += 1
            # The very bytes hashed are stored: verification re-hashes them (issue 9).
            canonical = encode(position, event)
            if _NUL_ESCAPE in canonical and _holds_nul(event):
                raise UnstorableEvent(
                    "the event holds a NUL character (U+0000), which PostgreSQL's jsonb and "
                    "text cannot hold: readers of the ledger could not read it"
                )
            digest = chain_hash(prev, canonical)
            # The event is stored once, inside the canonical bytes; the jsonb column is left
            # empty (migration 006, #12): readers take it from the bytes.
            rows.append((position, event_id, None, *index[1:], now, prev, digest, canonical))
            new_events.append(event)
            prev = digest
        if not rows:
            return [], None
        # COPY (binary) rather than INSERT ... unnest: PostgreSQL takes the rows as they come
        # instead of building twelve arrays and unnesting them (#12, docs/performance.md).
        await conn.copy_records_to_table("audit_ledger", records=rows, columns=_APPENDED)
        # The new leaves' hashes are at hand (leaf i is position i + 1), the older inputs were
        # read before the COPY: nothing is read back (#12).
        for row in rows:
            tree[(0, row[0] - 1)] = row[10]
        await self._record_restrictions(conn, new_events, now)
        await self._record_staff_facts(conn, [r[0] for r in rows], new_events)
        placed = (
            [(r[0], r[1], positions[r[1]]) for r in rows if r[1] in positions] if positions else []
        )
        return [r[0] for r in rows], _tail(_subtrees(position, have, tree), placed)

    async def append_decided(
        self,
        event_types: Sequence[str],
        decide: Callable[[list[LedgerFact]], dict[str, Any]],
        *,
        now: datetime,
    ) -> int:
        """Under the ledger lock: read the facts of ``event_types``, let ``decide`` build the
        event from them (it raises to refuse, and nothing is appended), append it; its
        position. Nobody appends between the read and the append. Refused before anything
        is read or locked when the ledger has no signed-leaf check (:class:`UncheckedFacts`)."""
        signed = self._facts_check()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
            event = decide(await ledger_facts(conn, event_types, signed=signed))
            (position,) = await self.append_locked(conn, [event], now=now)
        return position

    async def _record_restrictions(
        self, conn: PgConnection, events: Iterable[dict[str, Any]], now: datetime
    ) -> None:
        for event in events:
            restriction = restriction_of(event)
            if restriction is not None:
                await conn.execute(
                    "INSERT INTO audit_restricted_clients (client_id, state, since, "
                    "source_event_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    restriction[0],
                    restriction[1],
                    now,
                    index_columns(event).event_id,
                )

    async def _record_staff_facts(
        self, conn: PgConnection, positions: Sequence[int], events: Sequence[dict[str, Any]]
    ) -> None:
        """The retention facts of a member of staff that new entries carry (migration 009):
        the end of employment an erasure request names, the client a gift names (D-11)."""
        for position, event in zip(positions, events, strict=True):
            fact = staff_fact_of(position, event)
            if isinstance(fact, EmploymentEnd):
                await conn.execute(
                    "INSERT INTO audit_staff_employment_ends (position, staff_id, "
                    "employment_ended_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    fact.position,
                    fact.staff_id,
                    fact.ended_at,
                )
            elif isinstance(fact, GiftClient):
                await conn.execute(
                    "INSERT INTO audit_staff_gift_clients (staff_id, client_id, position) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    fact.staff_id,
                    fact.client_id,
                    fact.position,
                )

    # ---------------------------------------------------------------- reading

    async def entries(
        self, filters: LedgerFilters, *, after_position: int, limit: int, up_to: int | None = None
    ) -> list[StoredEntry]:
        sql, params = entries_statement(filters)
        rows = await self._pool.fetch(
            sql, after_position, limit, up_to if up_to is not None else 2**62, *params
        )
        return stored_page(rows)

    async def entry(self, position: int) -> StoredEntry | None:
        row = await self._pool.fetchrow(_ONE_ENTRY, position)
        return None if row is None else stored_page([row])[0]

    async def first_altered(self, filters: LedgerFilters) -> StoredEntry | None:
        """The first entry of ``filters`` holding a time no append writes (altered behind the
        ledger's back, :attr:`StoredEntry.unwritten`), if any: an export refuses before it
        starts rather than end half-way (#12)."""
        sql, params = first_altered_statement(filters)
        row = await self._pool.fetchrow(sql, *params)
        return None if row is None else stored_page([row])[0]

    async def scan(self, *, page_size: int = 2000) -> AsyncIterator[ChainEntry]:
        """Every entry (as the chain sees it) in ledger order, page by page."""
        async for stored in self.scan_stored(page_size=page_size):
            yield stored.entry

    async def scan_stored(
        self, *, page_size: int = 2000, after_position: int = 0
    ) -> AsyncIterator[StoredEntry]:
        """Every entry with its stored columns, in ledger order, page by page (constant
        memory)."""
        after = after_position
        while True:
            page = await self.entries(LedgerFilters(), after_position=after, limit=page_size)
            for entry in page:
                yield entry
            if len(page) < page_size:
                return
            after = page[-1].entry.position

    async def scan_rows(
        self, *, page_size: int = 5000, after_position: int = 0, through: int | None = None
    ) -> AsyncIterator[Sequence[Any]]:
        """Every stored row (:data:`ROW_FIELDS` order) in ledger order, a page at a time,
        from after ``after_position`` (up to ``through``, when given: a segment, #12).
        The next page is asked for as soon as one arrives, on a second connection, so the
        database reads it while the caller checks the one it has (the verifier's Python and
        PostgreSQL then work on the two cores at once)."""

        pages = scan_rows(
            self._pool, page_size=page_size, after_position=after_position, through=through
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page

    async def size(self) -> int:
        return int(await self._pool.fetchval("SELECT coalesce(max(position), 0) FROM audit_ledger"))

    async def client_states(self, client_ids: Iterable[str]) -> dict[str, ClientDataState]:
        """What may be shown of each client (D-04): shredded beats restricted."""
        wanted = sorted(set(client_ids))
        if not wanted:
            return {}
        rows = await self._pool.fetch(
            "SELECT client_id, state FROM audit_restricted_clients WHERE client_id = ANY($1)",
            wanted,
        )
        states: dict[str, ClientDataState] = {}
        for row in rows:
            state = ClientDataState(row["state"])
            if states.get(row["client_id"]) is not ClientDataState.SHREDDED:
                states[row["client_id"]] = state
        return states

    async def facts(
        self, event_types: Sequence[str], client_id: str | None = None
    ) -> list[LedgerFact]:
        """Entries of ``event_types`` (of ``client_id`` when given), in ledger order, held
        against their signed checkpoint; :class:`UncheckedFacts` without the check (D-11)."""
        return await ledger_facts(self._pool, event_types, client_id, signed=self._facts_check())

    async def staff_retention(self) -> StaffRetentionState:
        """The ends of employment and the clients of gifts recorded for members of staff
        (migration 009), for retention (D-11)."""
        async with self._pool.acquire() as conn:
            ends = await conn.fetch(
                "SELECT position, staff_id, employment_ended_at FROM audit_staff_employment_ends"
            )
            gifts = await conn.fetch(
                "SELECT position, staff_id, client_id FROM audit_staff_gift_clients"
            )
        return StaffRetentionState.of(
            (EmploymentEnd(r["position"], r["staff_id"], r["employment_ended_at"]) for r in ends),
            (GiftClient(r["position"], r["staff_id"], r["client_id"]) for r in gifts),
        )

    # ---------------------------------------------------------------- the Merkle tree

    async def range_hasher(
        self, ranges: Iterable[tuple[int, int]], *, conn: PgConnection | None = None
    ) -> RangeHasher:
        """A range hasher able to answer ``ranges`` (and their perfect pieces), from the
        cached subtrees and entry hashes, read in two queries."""
        entry_hashes, nodes = await self.tree_data(required(ranges), conn=conn)
        return SubtreeSource(entry_hashes, nodes).range_hasher()

    async def tree_data(
        self, needs: Requirements, *, conn: PgConnection | None = None
    ) -> tuple[dict[int, bytes], dict[NodeKey, bytes]]:
        """The entry hashes (by leaf index) and cached nodes ``needs`` names, in two queries
        (one when it names only leaves or only nodes, none when it names nothing: a refused
        checkpointer round reads leaves alone, #12 Round 35); what is not stored is missing
        from them."""
        executor: Any = conn if conn is not None else self._pool
        leaf_rows = (
            await executor.fetch(
                "SELECT position, hash FROM audit_ledger WHERE position = ANY($1::bigint[])",
                [i + 1 for i in needs.leaf_indices],
            )
            if needs.leaf_indices
            else []
        )
        node_keys = sorted(needs.nodes)
        node_rows = (
            await executor.fetch(
                "SELECT n.level, n.node_index, n.hash FROM audit_merkle_nodes n "
                "JOIN unnest($1::smallint[], $2::bigint[]) AS k(level, node_index) "
                "USING (level, node_index)",
                [k[0] for k in node_keys],
                [k[1] for k in node_keys],
            )
            if node_keys
            else []
        )
        return (
            {r["position"] - 1: bytes(r["hash"]) for r in leaf_rows},
            {(r["level"], r["node_index"]): bytes(r["hash"]) for r in node_rows},
        )

    # ---------------------------------------------------------------- retention

    async def expired_candidates(
        self,
        *,
        before: datetime,
        after_position: int,
        limit: int,
        clients: Sequence[str] | None = None,
    ) -> list[StoredEntry]:
        """Unpruned entries appended before ``before`` (the latest cutoff of any profile),
        in ``(appended_at, position)`` order, after the entry at ``after_position`` (the
        previous page's last candidate; 0 for the first page); with ``clients``, only those
        without a client or of one of ``clients``."""
        if clients is None:
            rows = await self._pool.fetch(_EXPIRED_CANDIDATES, before, after_position, limit)
        else:
            rows = await self._pool.fetch(
                _EXPIRED_CANDIDATES_OF, before, after_position, limit, list(clients)
            )
        return stored_page(rows)

    async def prune(
        self,
        markers: dict[int, dict[str, Any]],
        *,
        now: datetime,
        record: dict[str, Any],
    ) -> int:
        """Replace the events at ``markers``' positions by their markers (through the
        SECURITY DEFINER retention function) and append ``record``, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
            positions = sorted(markers)
            pruned = await conn.fetchval(
                "SELECT audit_prune_entries($1::bigint[], $2::jsonb[], $3)",
                positions,
                [markers[p] for p in positions],
                now,
            )
            await self.append_locked(conn, [record], now=now)
            return int(pruned)
