"""The PostgreSQL event store (asyncpg)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.upcasting import upcast
from branchline_shared.eventstore.ports import (
    ConcurrencyError,
    EventIdsBusy,
    GuessWrong,
    IdsTakenAfterLostCommit,
    LocksDeadlocked,
    LogPosition,
    LogRecord,
    NotIsolated,
    PendingPublication,
    RefusalRaced,
    StoredEvent,
    StoredPosition,
    StreamsBusy,
)
from branchline_shared.postgres.commit_outcome import Written, after_lost_commit, lost_in_flight
from branchline_shared.postgres.pool import PgConnection
from branchline_shared.postgres.statements import prefix_range

log = logging.getLogger(__name__)


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    # Readers decide on the current shape of every event: older versions are upcast.
    return upcast(RecordedEvent.model_validate(row["envelope"]))


def _position(row: asyncpg.Record) -> StoredPosition:
    return StoredPosition(
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        global_position=row["global_position"],
    )


@dataclass
class _Staged:
    event: RecordedEvent
    topic: str
    submission_hash: bytes | None
    # The envelope as JSON text, rendered by pydantic when staged: a batch stages a part while
    # the part before is being written (#12), so this runs while PostgreSQL works.
    envelope: str


EVENT_ID_BUCKETS = 32
"""The buckets event ids are claimed in (event store migration 011, #12): a transaction that
records a refusal of a sent id, or accepts an event under one, holds at most this many
advisory locks for it, whatever its size. The same in every process (a code constant)."""
EVENT_ID_CLAIM_CLASS = 0x424C4944
"""The class id of the claims' two-integer advisory locks ("BLID"): no other lock of
Branchline's uses the two-integer form."""

Claims = dict[tuple[uuid.UUID, uuid.UUID], bool]
"""Claimed ids: (the id sent, the id that must not be stored) -> exclusive (a refusal)."""

_CLAIM_SQL = "SELECT es_claim_event_ids($1::int, $2::int[], $3::bool[], $4::uuid[], $5::bytea[])"


def claimed_buckets(claims: Claims) -> tuple[list[int], list[bool]]:
    """The buckets of the ids sent, sorted, each once with its strongest mode."""
    modes: dict[int, bool] = {}
    for (key, _), exclusive in claims.items():
        bucket = key.int % EVENT_ID_BUCKETS
        modes[bucket] = modes.get(bucket, False) or exclusive
    buckets = sorted(modes)
    return buckets, [modes[b] for b in buckets]


async def _run_claims(conn: Any, claims: Claims) -> None:
    """At the end of a transaction, after its writes (#12, D-05): take the claimed ids'
    buckets (an acceptance shared, a refusal exclusive) and look afresh for the rows that
    must not be stored (the refusal of an id accepted, the event accepted under an id
    refused). Found: another writer recorded the other side meanwhile (committed: this one
    waited for it), :class:`RefusalRaced`."""
    if not claims:
        return
    buckets, exclusive = claimed_buckets(claims)
    ids = sorted({other for _, other in claims})
    found = await conn.fetchval(
        _CLAIM_SQL, EVENT_ID_CLAIM_CLASS, buckets, exclusive, ids, [None] * len(ids)
    )
    if found:
        raise RefusalRaced(f"{found} event id(s) refused and accepted by two writers at once")


# A writer takes the streams it writes in ONE pass over their sorted ids (#12, docs/intake.md
# "Lock order"): a new stream is created, one that exists is locked (``ON CONFLICT DO UPDATE``
# locks the row, FOR NO KEY UPDATE strength, waiting for another writer that holds it; the
# never-true ``WHERE`` updates nothing). Creating the new rows first and locking the existing
# ones after held a new row while waiting for an older one: with a writer that takes both in
# one sorted pass (the remembered write) that closed a cycle (a deadlock seen in the suite).
_TAKE_SQL = (
    "INSERT INTO es_streams AS s (stream_id, version) "
    "SELECT * FROM unnest($1::text[], $2::int[]) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = s.version WHERE false "
    "RETURNING stream_id, version"
)
# The versions of streams this transaction holds already (no lock: none can change them).
# A statement of its own: ``_TAKE_SQL``'s snapshot may predate the commit it waited for.
_VERSIONS_SQL = "SELECT stream_id, version FROM es_streams WHERE stream_id = ANY($1::text[])"
# Read streams (the product shelf, staff records) FOR SHARE, in the order Python sorts ids
# (code points; byte order in UTF-8): ``COLLATE "C"``, so a database created with another
# collation (en_US, ICU) locks them in the same order as every writer's sorted pass.
_SHARE_SQL = (
    "SELECT stream_id, version FROM es_streams WHERE stream_id = ANY($1::text[]) "
    'ORDER BY stream_id COLLATE "C" FOR SHARE'
)
# Never waits (NOWAIT): a lock taken out of the global order must not be waited for.
_TRY_LOCK_SQL = (
    "SELECT stream_id, version FROM es_streams WHERE stream_id = ANY($1::text[]) FOR UPDATE NOWAIT"
)


_WRITE_SQL = """
WITH staged AS (
    SELECT envelope::jsonb AS e, submission_hash, topic, message_key,
           nextval('es_global_position') AS global_position
    FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])
         AS s(envelope, submission_hash, topic, message_key)
), written AS (
    INSERT INTO es_events (global_position, event_id, stream_id, stream_version, type,
                           client_id, occurred_at, recorded_at, submission_hash, envelope)
    SELECT global_position, (e->>'event_id')::uuid, e->>'stream_id',
           (e->>'stream_version')::int, e->>'type', e->>'client_id',
           (e->>'occurred_at')::timestamptz, (e->>'recorded_at')::timestamptz,
           submission_hash, e
    FROM staged
    ORDER BY (e->>'event_id')::uuid
    RETURNING event_id, stream_id, stream_version, global_position
), outbox AS (
    INSERT INTO es_outbox (event_id, topic, message_key)
    SELECT (e->>'event_id')::uuid, topic, message_key FROM staged
), versions AS (
    UPDATE es_streams s SET version = w.version
    FROM (SELECT stream_id, max(stream_version) AS version FROM written GROUP BY stream_id) AS w
    WHERE s.stream_id = w.stream_id AND s.version <> w.version
)
SELECT event_id, global_position FROM written
"""
"""The events, their outbox rows and their streams' versions in one statement (#12). Each
event travels once, as its envelope's JSON text (with its submission hash, topic and key):
the indexed columns (id, stream, version, type, client, the two times) are read by the
statement from the envelope it stores, which is the event itself, so they are the event's
own values (the times are written with their offset, ``Z`` for UTC, so no session setting
enters their reading). Seven arrays fewer for asyncpg to check and encode element by element
in Python (a timestamp about 1 µs each): 11 arrays became 4. A stream's version
is the highest version written to it; the statement answers only what the events do not say,
their global positions. ``staged`` is read twice, so PostgreSQL computes it once: each
envelope is parsed once, and its global position is drawn there, in the arrays' order (the
staging order: a stream's events in version order), as the outbox's ids are (the relay's
order). The events are inserted in **event id order** (#12, Round 24): an id's entry in
``es_events``' unique index is taken in that one order by every writer, so two writers of the
same client-chosen ids on different streams never wait on each other in a cycle; the loser
waits for the first id they share (docs/intake.md, "Event ids are not streams"). A stream
already at its new version (one this unit created at the version it was likely to reach:
``PostgresUnitOfWork.lock_streams``'s ``likely``) is not updated again (#12)."""

_WRITE_NO_WAIT_SQL = _WRITE_SQL.replace(
    "    FROM staged\n    ORDER BY",
    "    FROM staged\n"
    "    WHERE (SELECT set_config('lock_timeout', $5::text, true) IS NOT NULL)\n"
    "    ORDER BY",
)
""":data:`_WRITE_SQL` for the first write of a transaction that holds an id above one of its
own already (out of the id order across the transaction): it must not wait out another
writer, so it sets ``lock_timeout`` to ``$5`` (:data:`_NO_WAIT`) for the rest of the
transaction by a one-time filter, evaluated before its first row is inserted. A statement of
its own, sent at most once per transaction, so every other write is the same statement as
before, without a condition of its own."""

_NO_WAIT = "50ms"
"""The ``lock_timeout`` a write out of the id order sets (:data:`_WRITE_NO_WAIT_SQL`) for the
rest of its transaction: a wait for another writer's uncommitted id ends with 55P03
(:class:`EventIdsBusy`) long before ``deadlock_timeout`` (1 s) could find a cycle, so such a
wait is never waited out, as a refusal stream's out-of-order lock never is (``FOR UPDATE
NOWAIT``). Not 1 ms: the setting bounds the transaction's every lock wait, and a heavy insert
load makes writers wait for a table's extension lock for a few milliseconds."""


_GUESSED_WRITE_SQL = """
WITH staged AS (
    SELECT envelope::jsonb AS e, submission_hash, topic, message_key,
           nextval('es_global_position') AS global_position
    FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])
         AS s(envelope, submission_hash, topic, message_key)
), created AS (
    INSERT INTO es_streams (stream_id, version)
    SELECT * FROM unnest($5::text[], $6::int[])
    RETURNING stream_id
), written AS (
    INSERT INTO es_events (global_position, event_id, stream_id, stream_version, type,
                           client_id, occurred_at, recorded_at, submission_hash, envelope)
    SELECT global_position, (e->>'event_id')::uuid, e->>'stream_id',
           (e->>'stream_version')::int, e->>'type', e->>'client_id',
           (e->>'occurred_at')::timestamptz, (e->>'recorded_at')::timestamptz,
           submission_hash, e
    FROM staged
    WHERE (SELECT count(*) FROM created) = cardinality($5::text[])
    ORDER BY (e->>'event_id')::uuid
    RETURNING event_id, stream_id, stream_version, global_position
), outbox AS (
    INSERT INTO es_outbox (event_id, topic, message_key)
    SELECT (e->>'event_id')::uuid, topic, message_key FROM staged
)
SELECT event_id, global_position FROM written
"""
"""A guessing unit's one write (#12): :data:`_WRITE_SQL`'s events and outbox rows, with the
streams created at the versions written (sorted ids, ``$5``; no ``ON CONFLICT``), sent
outside any transaction, so it commits by itself. A stream that exists fails the whole
statement (a unique violation on ``es_streams``; one that holds events fails on
``es_events (stream_id, stream_version)`` too): nothing is written. The events' insert reads
``created`` first (the count, an init plan evaluated before its first row), so the stream
rows are taken before any event row, in the stream ids' order, as every writer takes its
streams (``lock_streams``): waiting on another writer's new stream row closes no cycle. An
event id already stored (a resent event: the guess takes every id for not stored, Round 25)
fails it whole too, on ``es_events``' unique ``event_id``. The events are inserted in event
id order, as :data:`_WRITE_SQL` inserts them, their global positions drawn in ``staged``, in
the staging order (Round 25, #12): an event id a caller chose may be another writer's too,
and two writers that take shared ids in one order close no cycle (docs/intake.md, "Event ids
are not streams"); the stream rows come first, as everywhere. The outbox rows are
``staged``'s, in the staging order, as in :data:`_WRITE_SQL` (a statement fails or writes
everything)."""

_REMEMBERED_WRITE_SQL = """
WITH staged AS (
    SELECT envelope::jsonb AS e, submission_hash, topic, message_key,
           nextval('es_global_position') AS global_position
    FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])
         AS s(envelope, submission_hash, topic, message_key)
), taken AS (
    INSERT INTO es_streams AS s (stream_id, version)
    SELECT * FROM unnest($5::text[], $6::int[])
    ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version
    WHERE s.version > 0
      AND s.version = ($7::int[])[array_position($5::text[], s.stream_id)]
      AND EXISTS (SELECT FROM es_events v
                  WHERE v.stream_id = s.stream_id AND v.stream_version = s.version
                    AND v.event_id = ($8::uuid[])[array_position($5::text[], s.stream_id)])
    RETURNING stream_id
), written AS (
    INSERT INTO es_events (global_position, event_id, stream_id, stream_version, type,
                           client_id, occurred_at, recorded_at, submission_hash, envelope)
    SELECT global_position, (e->>'event_id')::uuid, e->>'stream_id',
           (e->>'stream_version')::int, e->>'type', e->>'client_id',
           (e->>'occurred_at')::timestamptz, (e->>'recorded_at')::timestamptz,
           submission_hash, e
    FROM staged
    WHERE (SELECT CASE WHEN count(*) = cardinality($5::text[]) THEN true
                       ELSE es_stale_stream_guess(count(*), cardinality($5::text[])) END
           FROM taken)
    ORDER BY (e->>'event_id')::uuid
    RETURNING event_id, stream_id, stream_version, global_position
), outbox AS (
    INSERT INTO es_outbox (event_id, topic, message_key)
    SELECT (e->>'event_id')::uuid, topic, message_key FROM staged
)
SELECT event_id, global_position FROM written
"""
"""A guessing unit's one write when some of its streams were taken at a version the decider
remembered (#12): :data:`_GUESSED_WRITE_SQL` with every stream row taken by one insert, in
the stream ids' order (sorted ``$5``, as every writer takes its streams: ``lock_streams``),
new and remembered alike. A new stream (remembered version ``$7`` 0) that exists, or a
remembered one no longer at its remembered version ``$7`` or no longer ending with its
remembered event ``$8`` (another process wrote it; a remembered decision that was rolled
back), is not updated (its row is locked, waited for if another writer holds it, and checked
again after that writer's commit); then fewer rows than streams are taken, and the events'
insert fails the whole statement with the stale guess's own SQLSTATE (:data:`STALE_STREAM_GUESS`,
raised by event store migration 010's function, called only then: the count is one
evaluation before the first event row, and a write that stands makes no call): nothing is
written. A stream's new events also meet
``es_events (stream_id, stream_version)``'s uniqueness. ``$7``/``$8`` are looked up by the
stream's place in ``$5`` (a group's streams: a few hundred at most)."""


_LOOKED_UP_CHECK = """
      AND (SELECT CASE WHEN count(*) = 0 THEN true ELSE es_looked_up_id_stored(count(*)) END
           FROM unnest($IDS::uuid[], $HASHES::bytea[]) AS l(event_id, submission_hash)
           JOIN es_events a ON a.event_id = l.event_id
           WHERE l.submission_hash IS NULL
              OR a.submission_hash IS DISTINCT FROM l.submission_hash)"""


def _checking_looked_up(sql: str, ids: int) -> str:
    """``sql`` (a guessed write) that also fails whole, with the SQLSTATE
    :data:`LOOKED_UP_ID_STORED`, when an id it looked up and does not insert (``$ids``) is
    stored otherwise than the unit allowed (Round 28): at all, or, where a submission hash
    is given beside it (``$ids + 1``), with another hash or none (Round 29: a refusal recorded
    before Round 28, whose kept submission the ordinary way compares, #12). Intake migration 002's
    ``es_looked_up_id_stored`` is called only then: one evaluation before the first event
    row, with the streams' count."""
    anchor = "\n    ORDER BY (e->>'event_id')::uuid\n    RETURNING"
    if sql.count(anchor) != 1:
        raise ValueError("a guessed write without its one event insert")
    check = _LOOKED_UP_CHECK.replace("$IDS", f"${ids}").replace("$HASHES", f"${ids + 1}")
    return sql.replace(anchor, check + anchor)


_GUESSED_CHECKED_WRITE_SQL = _checking_looked_up(_GUESSED_WRITE_SQL, 7)
_REMEMBERED_CHECKED_WRITE_SQL = _checking_looked_up(_REMEMBERED_WRITE_SQL, 9)
"""The two guessed writes for a unit that looked up ids it does not write (Round 28): the
ids of intake's recorded refusals, looked up with the ids sent, each allowed stored only with
the hash of the submission now sent under its refused event's id
(:meth:`GuessingUnitOfWork.may_be_stored_as`). Until Round 28 the guess took them for not
stored and nothing checked it (the write inserts only the ids it writes), so an id whose
event was refused and recorded was decided on the guess as new, whatever was sent under it
(docs/intake.md). A unit that looked up nothing else sends the statements as before."""

_CLAIMED_CHECK = """
      AND (SELECT CASE WHEN c.found = 0 THEN true ELSE es_looked_up_id_stored(c.found) END
           FROM (SELECT es_claim_event_ids($CLASS::int, $BUCKETS::int[], NULL::bool[],
                                           $IDS::uuid[], $HASHES::bytea[]) AS found) c)"""


def _claiming_looked_up(sql: str, ids: int) -> str:
    """:func:`_checking_looked_up`'s write whose check of the ids looked up is made after the
    claims of its acceptances under sent ids (#12, event store migration 011): their buckets
    taken shared (``$ids + 3``, class ``$ids + 2``), waiting for a writer recording a refusal
    of one of them, then the ids looked up afresh (``es_claim_event_ids``, VOLATILE: its
    query's snapshot is taken after the locks, not at the statement's start). A refusal
    committed meanwhile under a looked-up id fails it (:data:`LOOKED_UP_ID_STORED`) and the
    caller goes the ordinary way; a refusal recorded after it waits for its commit and finds
    the event (:class:`RefusalRaced`). Evaluated once, before the first event row."""
    anchor = "\n    ORDER BY (e->>'event_id')::uuid\n    RETURNING"
    if sql.count(anchor) != 1:
        raise ValueError("a guessed write without its one event insert")
    check = (
        _CLAIMED_CHECK.replace("$IDS", f"${ids}")
        .replace("$HASHES", f"${ids + 1}")
        .replace("$CLASS", f"${ids + 2}")
        .replace("$BUCKETS", f"${ids + 3}")
    )
    return sql.replace(anchor, check + anchor)


_GUESSED_CLAIMED_WRITE_SQL = _claiming_looked_up(_GUESSED_WRITE_SQL, 7)
_REMEMBERED_CLAIMED_WRITE_SQL = _claiming_looked_up(_REMEMBERED_WRITE_SQL, 9)

STALE_STREAM_GUESS = "BL001"
"""The SQLSTATE of :data:`_REMEMBERED_WRITE_SQL`'s failure when a remembered stream moved
(event store migration 010, ``es_stale_stream_guess``): a class of Branchline's own, which
no other error of the server carries, so nothing else is taken for a stale guess (#12)."""


LOOKED_UP_ID_STORED = "BL002"
"""The SQLSTATE of a guessed write's failure when an id it looked up but does not insert is
stored (:func:`_checking_looked_up`; intake migration 002, ``es_looked_up_id_stored``)."""


def _guess_failed(exc: asyncpg.PostgresError) -> bool:
    """The server refused a guessed write because its guess did not hold: a stream taken for
    new exists, an event id or a stream's next version is taken (a unique violation), a
    remembered stream moved (:data:`STALE_STREAM_GUESS`), or an id looked up and not written
    is stored (:data:`LOOKED_UP_ID_STORED`)."""
    return isinstance(exc, asyncpg.UniqueViolationError) or exc.sqlstate in (
        STALE_STREAM_GUESS,
        LOOKED_UP_ID_STORED,
    )


def _runs(written: list[str], read: list[str]) -> list[tuple[str, list[str]]]:
    """``written`` (UPDATE) and ``read`` (SHARE) merged in stream order, as runs of one mode."""
    merged = sorted([(s, "UPDATE") for s in written] + [(s, "SHARE") for s in read])
    runs: list[tuple[str, list[str]]] = []
    for stream_id, mode in merged:
        if runs and runs[-1][0] == mode:
            runs[-1][1].append(stream_id)
        else:
            runs.append((mode, [stream_id]))
    return runs


def _text_literal(value: str) -> str:
    """``value`` as a PostgreSQL escape string constant (``E'...'``): its backslashes and
    quotes escaped, so the constant is the value whatever ``standard_conforming_strings``
    says and nothing in it can end the constant. A NUL, which no text value can hold, is
    refused (a parameter holding one is refused by the server too)."""
    if "\x00" in value:
        raise ValueError("a text value cannot hold NUL")
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Only stream ids of the characters an id may hold (envelope's IDENTIFIER_PATTERN, plus the
# ``-`` and ``/`` the stream names add) are ever written into statement text: anything else,
# which no validated event can produce, takes the parameterised statements, so the escaping
# above is a second guard, never the only one.
_PLAIN_STREAM_ID = re.compile(r"[A-Za-z0-9._:@/\-]{1,300}")

_BEGIN_TAKING = (
    "BEGIN; INSERT INTO es_streams AS s (stream_id) VALUES {} "
    "ON CONFLICT (stream_id) DO UPDATE SET version = s.version WHERE false"
)


class PostgresUnitOfWork:
    def __init__(
        self,
        conn: PgConnection,
        group: SharedTransaction | None = None,
        *,
        waits_out_of_order: bool = False,
    ) -> None:
        self._conn = conn
        self._group = group  # the group commit whose transaction (and locks) this one shares
        # True: a write out of the id order waits as any other (no ``_NO_WAIT``), for a
        # writer whose event ids no other writer sends (followup's, made by itself and taken
        # under its client lock): the bound would otherwise hold for every later lock wait of
        # its unit (its read models' rows, which racing timer runners contend for).
        self._waits_out_of_order = waits_out_of_order
        self._staged: list[_Staged] = []
        self.committed = 0
        # What a lost COMMIT is checked by (#12): each event written, at the global position
        # its write drew (another writer's row under the same id has another, Round 25).
        self.written_at: dict[uuid.UUID, int] = {}
        self.share_locked: set[str] = set()  # streams this unit read-locked (they exist)
        # Outside a group: the versions of the streams this unit holds locked for update, as
        # locked and as it wrote them (a group keeps its own: ``held_versions``).
        self._locked: dict[str, int] = {}
        # Streams this unit created at a likely version, not at 0 (#12): the row's version,
        # which ``settle_versions`` makes the stream's real one before the unit ends.
        self._created_at: dict[str, int] = {}
        # Outside a group: the event ids this transaction inserted, as the highest (its
        # ``int``, -1 for none) and whether a write out of the id order set ``_NO_WAIT``
        # (a group keeps its own: ``SharedTransaction.id_order``).
        self._id_order: dict[str, Any] = {"upto": -1, "no_wait": False}
        # Outside a group: the ids this unit claims before its commit (#12, ``claim_ids``).
        self.claims: Claims = {}

    def claim_ids(self, claims: Iterable[tuple[uuid.UUID, uuid.UUID, bool]]) -> None:
        """Claim event ids before the transaction commits (event store migration 011, #12):
        each ``(id sent, id that must not be stored, exclusive)``: an acceptance under a sent
        id claims it shared, looking for its refusal; a refusal of one exclusive, looking for
        an event accepted under it. Run once, last, by the store (a group's at its commit)."""
        group = self._group
        for key, other, exclusive in claims:
            if group is not None:
                group.claim(key, other, exclusive)
            else:
                self.claims[key, other] = exclusive or self.claims.get((key, other), False)

    async def lock_streams(
        self,
        stream_ids: Sequence[str],
        *,
        shared: Sequence[str] = (),
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        group = self._group
        if group is None:
            versions = await self._lock(stream_ids, shared, likely)
            self._locked.update(versions)
            return versions
        # Inside a group commit the group already holds its streams' locks, taken once in the
        # one global order, and knows their versions (only this transaction can change them
        # while it holds them): a unit of work locks only what the group does not hold, and
        # usually costs no round trip at all (#12). A stream the group holds read-locked only
        # and this unit writes is locked for update here, as before.
        held = group.held_versions
        written = set(stream_ids)
        missing = sorted(written - held.keys())
        missing_read = sorted(set(shared) - written - held.keys() - group.held_shared)
        versions = await self._lock(missing, missing_read) if missing or missing_read else {}
        versions.update({s: held[s] for s in written & held.keys()})
        return versions

    async def _lock(
        self,
        stream_ids: Sequence[str],
        shared: Sequence[str],
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        try:
            return await self._take(stream_ids, shared, likely)
        except asyncpg.DeadlockDetectedError as exc:
            raise LocksDeadlocked(str(exc)) from exc
        except asyncpg.LockNotAvailableError as exc:
            if self._order["no_wait"]:  # a wait after a write out of the id order
                raise EventIdsBusy(str(exc)) from exc
            raise

    @property
    def _order(self) -> dict[str, Any]:
        return self._group.id_order if self._group is not None else self._id_order

    async def _take(
        self,
        stream_ids: Sequence[str],
        shared: Sequence[str],
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        written = set(stream_ids)
        ordered = sorted(written)  # one lock order for every writer: no deadlocks
        read = sorted(set(shared) - written)
        if not ordered and not read:
            return {}
        versions: dict[str, int] = {}
        held: list[str] = []  # existing streams taken: their versions are read after
        # Written streams taken, read ones FOR SHARE, all in the one global order (a run of one
        # mode per statement): every wait is for a stream after all those already held, so
        # two transactions never wait on each other in a cycle (docs/intake.md, "Lock order").
        for mode, run in _runs(ordered, read):
            if mode == "SHARE":
                rows = await self._conn.fetch(_SHARE_SQL, run)
                self.share_locked.update(r["stream_id"] for r in rows)
                continue
            # A new stream is created at the version it will likely reach, so the write that
            # reaches it need not update its row again (#12: an insert and then an update were
            # two row versions and their WAL per new stream). The row is the lock; only this
            # transaction sees the version until it commits, and it holds the stream at 0 (no
            # events) until it writes.
            created = await self._conn.fetch(
                _TAKE_SQL, run, [likely.get(s, 0) for s in run] if likely else [0] * len(run)
            )
            if likely:
                self._created_at.update({r["stream_id"]: r["version"] for r in created})
            new = {r["stream_id"] for r in created}
            versions.update(dict.fromkeys(new, 0))
            held += [s for s in run if s not in new]
        if held:
            rows = await self._conn.fetch(_VERSIONS_SQL, held)
            versions.update({r["stream_id"]: r["version"] for r in rows})
        return versions

    async def try_lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Lock ``stream_ids`` now or raise :class:`StreamsBusy`, never waiting and never
        creating a stream: taken after other locks, out of the global order, so waiting here
        could close a cycle with a writer that takes them in the order (docs/intake.md)."""
        wanted = sorted(set(stream_ids))
        versions: dict[str, int] = {}
        # Those the group, or this unit, holds already cost nothing (and their versions are
        # the ones kept: a row this unit created may hold a likely version, not the real one).
        held = self._group.held_versions if self._group is not None else self._locked
        versions = {s: held[s] for s in wanted if s in held}
        wanted = [s for s in wanted if s not in held]
        if not wanted:
            return versions
        try:
            rows = await self._conn.fetch(_TRY_LOCK_SQL, wanted)
        except asyncpg.LockNotAvailableError as exc:
            raise StreamsBusy(f"locked by another transaction: {wanted}") from exc
        if len(rows) != len(wanted):
            found = {r["stream_id"] for r in rows}
            raise StreamsBusy(f"not created yet: {sorted(set(wanted) - found)}")
        versions.update({r["stream_id"]: r["version"] for r in rows})
        if self._group is None:
            self._locked.update(versions)
        return versions

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        if self._group is not None:  # the group's answers, and the database for the rest
            found, unknown = self._group.known(event_ids)
            if unknown:
                found.update(await self._query_existing(unknown))
            return found
        return await self._query_existing(event_ids)

    async def _query_existing(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        if not event_ids:
            return {}
        rows = await self._conn.fetch(
            "SELECT event_id, stream_id, stream_version, global_position, submission_hash, "
            "envelope FROM es_events WHERE event_id = ANY($1::uuid[])",
            list(event_ids),
        )
        return {
            r["event_id"]: StoredEvent(_position(r), _recorded(r), r["submission_hash"])
            for r in rows
        }

    async def load_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        histories: dict[str, list[RecordedEvent]] = {s: [] for s in stream_ids}
        wanted = set(stream_ids)
        # A stream locked at version 0 has no events: a stream's version is its last event's,
        # set by the statement that writes the events (the one writer, _WRITE_SQL), and the
        # lock keeps it so; what was written since is in the versions kept (a group's
        # ``held_versions``, undone with a caller rolled back; a unit's own ``_locked``). So
        # a new client's history, every registration's, costs no round trip (#12): in a group,
        # and for a batch's new clients, whose histories a statement used to look for.
        held = self._group.held_versions if self._group is not None else self._locked
        wanted = {s for s in wanted if held.get(s) != 0}
        if not wanted:
            return histories
        rows = await self._conn.fetch(
            "SELECT stream_id, envelope FROM es_events WHERE stream_id = ANY($1::text[]) "
            "ORDER BY stream_id, stream_version",
            list(wanted),
        )
        for r in rows:
            histories[r["stream_id"]].append(_recorded(r))
        return histories

    async def load_stream_tails(
        self, from_versions: Mapping[str, int]
    ) -> dict[str, list[RecordedEvent]]:
        """Each stream's events from a version on (inclusive): O(new events), not O(history)."""
        tails: dict[str, list[RecordedEvent]] = {s: [] for s in from_versions}
        if not from_versions:
            return tails
        rows = await self._conn.fetch(
            "SELECT f.stream_id, e.envelope "
            "FROM unnest($1::text[], $2::int[]) AS f(stream_id, version) "
            "CROSS JOIN LATERAL (SELECT envelope, stream_version FROM es_events "
            "  WHERE stream_id = f.stream_id AND stream_version >= f.version) AS e "
            "ORDER BY f.stream_id, e.stream_version",
            list(from_versions),
            list(from_versions.values()),
        )
        for r in rows:
            tails[r["stream_id"]].append(_recorded(r))
        return tails

    def stage(self, event: RecordedEvent, *, topic: str, submission_hash: bytes | None) -> None:
        self._staged.append(_Staged(event, topic, submission_hash, event.model_dump_json()))

    async def commit(self) -> list[StoredPosition]:
        """Write what is staged so far, in the unit's transaction. What is staged while this
        runs is the next call's: a batch stages its next part meanwhile (#12)."""
        staged, self._staged = self._staged, []
        if not staged:
            return []
        events = [s.event for s in staged]
        last_versions: dict[str, int] = {}
        for e in events:
            last_versions[e.stream_id] = max(e.stream_version, last_versions.get(e.stream_id, 0))
        # The write inserts its ids in id order (_WRITE_SQL); one that would insert an id below
        # one this transaction holds already (an earlier part of a batch, an earlier caller of
        # a group) is out of that order across the transaction, and must not wait (#12).
        ids = [e.event_id.int for e in events]
        order = self._order
        out_of_order = min(ids) < order["upto"] and not self._waits_out_of_order
        no_wait = out_of_order or order["no_wait"]
        # One statement, one round trip, for the events, their outbox rows and the streams'
        # versions (#12): a statement is atomic, so this writes all of it or none, like the
        # three statements it replaces.
        arguments: list[Any] = [
            # The envelopes as JSON text, cast by the statement: rendered by pydantic in one
            # call each, instead of dumped to Python objects that the connection's jsonb codec
            # then encodes one by one in Python (#12); the columns are read from them.
            [s.envelope for s in staged],
            [s.submission_hash for s in staged],
            [s.topic for s in staged],
            [e.subject_id for e in events],
        ]
        # Set once: it holds for the rest of the transaction (a savepoint rolled back takes it
        # back, and the group's journal the flag with it).
        sql = _WRITE_SQL
        if out_of_order and not order["no_wait"]:
            sql = _WRITE_NO_WAIT_SQL
            arguments.append(_NO_WAIT)
        try:
            rows = await self._conn.fetch(sql, *arguments)
        except asyncpg.LockNotAvailableError as exc:
            if no_wait:  # another writer's uncommitted id, not waited for
                raise EventIdsBusy(str(exc)) from exc
            raise
        upto = max(max(ids), order["upto"])
        written = {r["event_id"]: r["global_position"] for r in rows}
        positions = [
            StoredPosition(e.event_id, e.stream_id, e.stream_version, written[e.event_id])
            for e in events
        ]
        if self._group is not None:
            self._group.wrote_ids(upto, no_wait=no_wait)
            self._group.wrote(
                last_versions,
                [
                    StoredEvent(p, e, st.submission_hash)
                    for p, e, st in zip(positions, events, staged, strict=True)
                ],
            )
        if self._group is None:
            self._locked.update({s: v for s, v in last_versions.items() if s in self._locked})
            self._id_order.update(upto=upto, no_wait=no_wait)
        self.written_at.update(written)
        self.committed += len(staged)
        return positions

    async def settle_versions(self) -> None:
        """Before the unit's transaction commits: every stream it created at a likely version
        (:meth:`lock_streams`) that its writes did not leave at that version is set to the
        version it was written to (0 if none was written), so a stream's version is its last
        event's, as ever. One statement, and none when every guess held (#12)."""
        wrong = {s: self._locked[s] for s, v in self._created_at.items() if self._locked[s] != v}
        self._created_at = {}
        if wrong:
            await self._conn.execute(
                "UPDATE es_streams s SET version = u.version "
                "FROM unnest($1::text[], $2::int[]) AS u(stream_id, version) "
                "WHERE s.stream_id = u.stream_id",
                list(wrong),
                list(wrong.values()),
            )


class GuessingUnitOfWork:
    """:meth:`PostgresEventStore.guessing_unit_of_work`: every stream it is asked to lock is
    taken for new (version 0, no events); its one write creates them, in a statement of its
    own transaction (:data:`_GUESSED_WRITE_SQL`). Event ids to look up are taken for not
    stored (the write's unique index checks them). Whatever would need a transaction (a read
    lock, a stream locked after the decisions: a refusal to record, a history, a second
    write, or a write of nothing) raises :class:`GuessWrong` before any statement, so the
    caller can run the same work the ordinary way (#12)."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self._streams: dict[str, int] = {}  # taken for new, and the version written
        self._remembered: dict[str, tuple[int, uuid.UUID]] = {}  # taken at these (#12)
        self._staged: list[_Staged] = []
        # Taken for not stored, or stored with this submission hash: the write checks them.
        self._looked_up: dict[uuid.UUID, bytes | None] = {}
        self._claims: Claims = {}  # checked by the write (#12, migration 011)
        self._sent = False
        self.committed = 0

    @property
    def sent(self) -> bool:
        return self._sent

    @property
    def guessed(self) -> bool:
        """Streams were taken for new: decisions may rest on the guess."""
        return bool(self._streams)

    def _unsent(self, what: str) -> None:
        if self._sent:  # nothing may follow the write that committed it
            raise RuntimeError(f"a guessing unit of work was asked to {what} after its write")

    async def lock_streams(
        self,
        stream_ids: Sequence[str],
        *,
        shared: Sequence[str] = (),
        likely: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        self._unsent("lock streams")
        if shared:
            raise GuessWrong("streams to read-lock")
        taken = {s: self._remembered[s][0] if s in self._remembered else 0 for s in stream_ids}
        self._streams.update(taken)
        return taken

    def remember(self, streams: Mapping[str, tuple[int, uuid.UUID]]) -> None:
        self._unsent("take remembered streams")
        self._remembered.update(streams)

    async def try_lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """A refusal to record (no guessed statement writes one): :class:`GuessWrong` naming
        the streams, so only their callers leave the guess (Round 28, #12)."""
        self._unsent("lock streams")
        raise GuessWrong(
            f"streams locked after the decisions: {len(stream_ids)}",
            refusal_streams=frozenset(stream_ids),
        )

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        """None of them, as guessed (Round 25, #12): no statement. The write checks it: an id
        already stored (a resent event, a refusal's id) fails it whole on ``es_events``'
        unique index, :class:`GuessWrong`, and the ordinary way looks the ids up. An id looked
        up that the write does not insert (a refusal's id: intake looks up the id each sent
        id's refusal would have) is checked by the write too, since Round 28
        (:data:`_GUESSED_CHECKED_WRITE_SQL`)."""
        self._unsent("look up ids")
        for event_id in event_ids:
            self._looked_up.setdefault(event_id, None)
        return {}

    def claim_ids(self, claims: Iterable[tuple[uuid.UUID, uuid.UUID, bool]]) -> None:
        """Acceptances under sent ids (#12): the write claims their buckets shared and looks
        their refusals' ids up afresh after it (:data:`_GUESSED_CLAIMED_WRITE_SQL`). A
        refusal (exclusive) is never written by a guess."""
        self._unsent("claim ids")
        for key, other, exclusive in claims:
            if exclusive:
                raise GuessWrong("a refusal to record")
            self._looked_up.setdefault(other, None)
            self._claims[key, other] = False

    def may_be_stored_as(self, hashes: Mapping[uuid.UUID, bytes]) -> None:
        """Ids looked up (and taken for not stored) that the write may find stored, with these
        submission hashes (Round 28): a refused event's recorded refusal, whose submission is
        sent again under the refused event's id, is decided again, as the ordinary way
        decides it; another submission under that id fails the write
        (:data:`LOOKED_UP_ID_STORED`) and is looked up the ordinary way."""
        self._unsent("allow stored ids")
        self._looked_up.update(hashes)

    async def load_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        self._unsent("read streams")
        if any(s not in self._streams or s in self._remembered for s in stream_ids):
            # A remembered stream's history is the decider's (history_tail), never read here.
            raise GuessWrong("a stream read that was not taken for new")
        return {s: [] for s in stream_ids}  # taken for new: no events

    def stage(self, event: RecordedEvent, *, topic: str, submission_hash: bytes | None) -> None:
        self._unsent("stage an event")
        self._staged.append(_Staged(event, topic, submission_hash, event.model_dump_json()))

    async def commit(self) -> list[StoredPosition]:
        self._unsent("write")
        staged, self._staged = self._staged, []
        if not staged:
            # The decisions relied on the guess (a version conflict against 0, say) and no
            # write would check it: only the ordinary way can answer them.
            raise GuessWrong("nothing to write")
        events = [s.event for s in staged]
        versions = dict(self._streams)
        for e in events:  # each stream's events on from its guess, as decided on it
            if e.stream_id not in versions or e.stream_version != versions[e.stream_id] + 1:
                raise GuessWrong(f"an event off the streams taken for new: {e.stream_id}")
            versions[e.stream_id] = e.stream_version
        streams = sorted(versions)
        self._sent = True
        lost: BaseException | None = None
        writing = False  # the statement is on its way: a loss from here may have committed
        try:
            async with self._pool.acquire() as conn:
                session = conn.get_server_pid()
                arguments: list[Any] = [
                    [s.envelope for s in staged],
                    [s.submission_hash for s in staged],
                    [s.topic for s in staged],
                    [e.subject_id for e in events],
                    streams,
                    [versions[s] for s in streams],
                ]
                remembered = [self._remembered.get(s) for s in streams]
                writes = {e.event_id for e in events}
                absent = sorted(i for i in self._looked_up if i not in writes)
                allowed = [self._looked_up[i] for i in absent]
                claimed: list[Any] = []
                if self._claims and absent:
                    claimed = [EVENT_ID_CLAIM_CLASS, claimed_buckets(self._claims)[0]]
                writing = True
                try:
                    if any(r is not None for r in remembered):
                        arguments.append([r[0] if r else 0 for r in remembered])
                        arguments.append([r[1] if r else None for r in remembered])
                        if claimed:
                            arguments += [absent, allowed, *claimed]
                            rows = await conn.fetch(_REMEMBERED_CLAIMED_WRITE_SQL, *arguments)
                        elif absent:
                            arguments += [absent, allowed]
                            rows = await conn.fetch(_REMEMBERED_CHECKED_WRITE_SQL, *arguments)
                        else:
                            rows = await conn.fetch(_REMEMBERED_WRITE_SQL, *arguments)
                    elif claimed:
                        arguments += [absent, allowed, *claimed]
                        rows = await conn.fetch(_GUESSED_CLAIMED_WRITE_SQL, *arguments)
                    elif absent:
                        arguments += [absent, allowed]
                        rows = await conn.fetch(_GUESSED_CHECKED_WRITE_SQL, *arguments)
                    else:
                        rows = await conn.fetch(_GUESSED_WRITE_SQL, *arguments)
                except asyncpg.PostgresError as exc:
                    if not lost_in_flight(exc) and _guess_failed(exc):
                        # Refused, its own transaction rolled back: on the same connection,
                        # what of the guess the store holds otherwise (Round 27, #12), the ids
                        # looked up and not written among the ids (Round 28).
                        self._sent = False
                        streams_taken, ids_taken = await _taken(
                            conn, events, streams, remembered, absent
                        )
                        raise GuessWrong(
                            str(exc), taken_streams=streams_taken, taken_ids=ids_taken
                        ) from exc
                    raise
        except GuessWrong:
            raise
        except Exception as exc:
            if not (writing and lost_in_flight(exc)):
                if isinstance(exc, asyncpg.PostgresError):
                    self._sent = False  # refused otherwise: nothing written, raised as it is
                raise
            # No answer: the statement, its own transaction, may have committed (#12). It
            # was read as the server's refusal (ConnectionDoesNotExistError is a
            # PostgresError), and the group run again the ordinary way: its events stored
            # twice, under new ids, when the lost write had committed.
            lost = exc
        if lost is not None:
            # The write's answer is lost with it, so not the positions it drew: each row is
            # told by the envelope sent (a resend of the same id by another writer, stored
            # meanwhile, has its own, Round 25).
            sent = [Written(s.event.event_id, envelope=s.envelope) for s in staged]
            try:
                found = await after_lost_commit(self._pool, sent, lost, session=session)
            except IdsTakenAfterLostCommit as exc:
                # Not written: another writer's events hold some of its ids. The ordinary
                # way decides again on what is stored, and answers those ids as resends.
                self._sent = False
                raise GuessWrong(str(exc)) from exc
            except BaseException as exc:
                if exc is lost:  # none stored: the ordinary way may write them
                    self._sent = False
                raise
            written = found
        else:
            written = {r["event_id"]: r["global_position"] for r in rows}
        self.committed = len(staged)
        return [
            StoredPosition(e.event_id, e.stream_id, e.stream_version, written[e.event_id])
            for e in events
        ]


_TAKEN_SQL = """
SELECT e.event_id, NULL::text AS stream_id
FROM es_events e
WHERE e.event_id = ANY($1::uuid[])
UNION ALL
SELECT NULL::uuid, g.stream_id
FROM unnest($2::text[], $3::int[], $4::uuid[]) AS g(stream_id, version, last_id)
JOIN es_streams s ON s.stream_id = g.stream_id
WHERE g.version = 0
   OR s.version <> g.version
   OR NOT EXISTS (SELECT FROM es_events v
                  WHERE v.stream_id = s.stream_id AND v.stream_version = s.version
                    AND v.event_id = g.last_id)
"""
"""After a guessing unit's write was refused (Round 27, #12): which of its event ids ``$1``
are stored, and which of its streams ``$2`` stand otherwise than guessed: one taken for new
(``$3`` 0) that exists, or one taken at a remembered version ``$3`` that is no longer at it or
no longer ends with the remembered event ``$4`` (what :data:`_REMEMBERED_WRITE_SQL` checks).
One statement, index lookups only (``es_events``' ``event_id`` and ``(stream_id,
stream_version)``, ``es_streams``' ``stream_id``), all values bound."""


async def _taken(
    conn: Any,
    events: Sequence[RecordedEvent],
    streams: Sequence[str],
    remembered: Sequence[tuple[int, uuid.UUID] | None],
    absent: Sequence[uuid.UUID] = (),
) -> tuple[frozenset[str], frozenset[uuid.UUID]]:
    """The streams and event ids of a refused guessed write that the store holds otherwise
    than guessed (:data:`_TAKEN_SQL`), asked after the refusal on the connection that sent it
    (its own transaction rolled back): every one, whatever the server's refusal named and in
    whatever language (Round 27, #12; Round 26 compared the refusal's English ``detail`` with
    the keys sent, which named one key at most, and none for a stale remembered stream's
    ``BL001``). Nothing when the question fails (nothing named: the group goes the ordinary
    way, which meets the same fault itself) or finds nothing."""
    try:
        rows = await conn.fetch(
            _TAKEN_SQL,
            [e.event_id for e in events] + list(absent),
            list(streams),
            [r[0] if r else 0 for r in remembered],
            [r[1] if r else None for r in remembered],
        )
    except Exception:  # an outage, a cancel by the server: nothing named
        log.warning("a refused guess's stored keys could not be read")
        return frozenset(), frozenset()
    return (
        frozenset(r["stream_id"] for r in rows if r["stream_id"] is not None),
        frozenset(r["event_id"] for r in rows if r["event_id"] is not None),
    )


_ABSENT: Any = object()


@dataclass
class _Caller:
    """One caller's part of a group (``SharedTransaction.isolated``)."""

    undo: list[tuple[dict[Any, Any], Any, Any]]  # what it changed in the group's knowledge
    clean: bool = True  # nothing written since its savepoint was taken
    alone: bool = False  # the transaction's only caller, without a savepoint


class SharedTransaction:
    """One database transaction lent to several units of work in turn (group commit).

    Each caller's part runs in a savepoint of its own, so one that fails (a unique violation,
    a bug) rolls back alone and the others go on; all that succeeded become durable together,
    with one commit and one WAL flush.

    Round trips are what a request costs within a group (#12), so the group remembers what it
    learnt and what its callers wrote, and its units of work ask the database only for the
    rest: the group's locks are taken once and their versions kept (only this transaction
    can change a stream it holds); the event ids of the whole group are looked up once,
    after its locks (:meth:`find_existing`); a caller's savepoint is released by the
    statement that takes the next caller's (the commit releases the last); and a caller's
    first unit of work uses the caller's savepoint instead of one of its own, since rolling
    back to it undoes exactly that unit. What a rolled-back caller or unit changed in that
    knowledge is undone with it."""

    _SAVEPOINT = "branchline_caller"

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        self.committed = 0
        self.held_versions: dict[str, int] = {}  # locked for update by the group
        self.held_shared: set[str] = set()  # read-locked by the group
        # Event ids looked up for the group: the stored event, or None where there was none.
        self.checked: dict[uuid.UUID, StoredEvent | None] = {}
        self.written: dict[uuid.UUID, StoredEvent] = {}  # by this transaction's callers
        # The highest event id (its ``int``) the group's writes hold, and whether one of them,
        # out of the id order, set ``_NO_WAIT`` (#12): kept as the group's other knowledge is,
        # so a caller rolled back to its savepoint takes back its part (as the server does
        # its ids and the setting).
        self.id_order: dict[str, Any] = {"upto": -1, "no_wait": False}
        self._journals: list[list[tuple[dict[Any, Any], Any, Any]]] = []
        # The ids its callers claim (#12, ``PostgresUnitOfWork.claim_ids``), taken at its commit.
        self.claims: Claims = {}
        self._caller: _Caller | None = None
        self._savepoint_open = False
        # The transaction is begun by its first statement (#12): ``BEGIN`` travels with the
        # group's stream locks (:meth:`lock_streams`), one round trip less per group.
        self._begun = False
        self._nested = 0  # savepoints of nested scopes open (asyncpg's nested transactions)

    async def _start(self) -> None:
        if not self._begun:
            self._begun = True  # a ROLLBACK after a failed BEGIN only warns
            await self._conn.execute("BEGIN")

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        """A nested scope's savepoint, as asyncpg's nested ``transaction()`` takes it (which
        refuses to run in a transaction it did not begin): released if the scope ends,
        rolled back to if it raises."""
        await self._start()
        self._nested += 1
        name = f"branchline_nested_{self._nested}"
        try:
            await self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                await self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                raise
            await self._conn.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._nested -= 1

    async def finish(self, command: str) -> None:
        """``COMMIT`` or ``ROLLBACK``, if the transaction was begun (the store's
        :meth:`PostgresEventStore.shared_transaction` ends it)."""
        if self._begun:
            self._begun = False
            await self._conn.execute(command)

    async def lock_streams(self, stream_ids: Sequence[str], *, shared: Sequence[str] = ()) -> None:
        """Lock every stream the group will touch (``shared``: only read, e.g. the product
        shelf), once, in the one global order: the units of work that follow find them held,
        and two groups (in two processes) can never deadlock on each other's streams.

        As the group's first statement, its written streams are taken by the statement that
        begins the transaction (#12: one round trip, where ``BEGIN`` was one of its own): a
        simple query, the stream ids in it as escaped constants (:func:`_text_literal`; only
        ids of plain characters, :data:`_PLAIN_STREAM_ID`, others take the parameterised
        statements), creating the new ones and locking the others in one pass over the sorted
        ids (:data:`_TAKE_SQL`'s form), answering how many rows it inserted. If it created them
        all, they are this transaction's, at version 0; otherwise the versions are read by a
        statement of their own. Only when every read stream sorts after every written one
        (the usual shape: ``client-...`` before ``product-...`` and ``staff-...``): a read
        stream between two written ones is locked in its place, by the runs of
        :meth:`PostgresUnitOfWork.lock_streams`."""
        written = sorted(set(stream_ids))
        read = sorted(set(shared) - set(written))
        if (
            self._begun
            or not written
            or (read and read[0] < written[-1])
            or not all(map(_PLAIN_STREAM_ID.fullmatch, written))
        ):
            await self._start()
            uow = PostgresUnitOfWork(self._conn)
            self.held_versions.update(await uow.lock_streams(written, shared=read))
            self.held_shared.update(uow.share_locked)
            return
        rows = ", ".join(f"({_text_literal(s)})" for s in written)
        self._begun = True
        try:
            status = await self._conn.execute(_BEGIN_TAKING.format(rows))
            if int(status.rpartition(" ")[2]) == len(written):
                self.held_versions.update(dict.fromkeys(written, 0))
            else:
                versions = await self._conn.fetch(_VERSIONS_SQL, written)
                self.held_versions.update({r["stream_id"]: r["version"] for r in versions})
            if read:
                locked = await self._conn.fetch(_SHARE_SQL, read)
                self.held_shared.update(r["stream_id"] for r in locked)
        except asyncpg.DeadlockDetectedError as exc:
            raise LocksDeadlocked(str(exc)) from exc

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> None:
        """Look up the group's event ids in one statement (after its locks: an id on a stream
        the group holds cannot appear later); its units of work take the answers from here.
        An id stored meanwhile on a stream the group does not hold (another process reusing
        it) makes the write fail as a lost race, and the retry reads the database again."""
        unknown = [i for i in dict.fromkeys(event_ids) if i not in self.checked]
        if unknown:
            await self._start()
        found = await PostgresUnitOfWork(self._conn).find_existing(unknown)
        self.checked.update({i: found.get(i) for i in unknown})

    def known(
        self, event_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, StoredEvent], list[uuid.UUID]]:
        """What the group knows of ``event_ids`` (stored ones) and the ids it does not know."""
        found: dict[uuid.UUID, StoredEvent] = {}
        unknown: list[uuid.UUID] = []
        for event_id in event_ids:
            stored = self.written.get(event_id)
            if stored is None:
                stored = self.checked.get(event_id, _ABSENT)
            if stored is _ABSENT:
                unknown.append(event_id)
            elif stored is not None:
                found[event_id] = stored
        return found, unknown

    def wrote_ids(self, upto: int, *, no_wait: bool) -> None:
        """A unit of work's write left the group holding ids up to ``upto``; ``no_wait``: the
        transaction's lock waits are cut short (:data:`_NO_WAIT`)."""
        if upto != self.id_order["upto"]:
            self._set(self.id_order, "upto", upto)
        if no_wait and not self.id_order["no_wait"]:
            self._set(self.id_order, "no_wait", True)

    def wrote(self, versions: Mapping[str, int], events: Sequence[StoredEvent]) -> None:
        """A unit of work wrote ``events``, leaving its streams at ``versions``."""
        for stream_id, version in versions.items():
            if stream_id in self.held_versions:
                self._set(self.held_versions, stream_id, version)
        for stored in events:
            self._set(self.written, stored.position.event_id, stored)

    def claim(self, key: uuid.UUID, other: uuid.UUID, exclusive: bool) -> None:
        """A caller's claim, kept as the group's other knowledge is (a caller rolled back to
        its savepoint takes it back); all taken at once before the commit."""
        self._set(self.claims, (key, other), exclusive or self.claims.get((key, other), False))

    def _set(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        if self._journals:
            self._journals[-1].append((mapping, key, mapping.get(key, _ABSENT)))
        mapping[key] = value

    def _begin(self) -> list[tuple[dict[Any, Any], Any, Any]]:
        journal: list[tuple[dict[Any, Any], Any, Any]] = []
        self._journals.append(journal)
        return journal

    def _end(self, journal: list[tuple[dict[Any, Any], Any, Any]], *, kept: bool) -> None:
        """Close the innermost journal: kept, the outer one inherits it; else it is undone."""
        popped = self._journals.pop()
        assert popped is journal
        if kept:
            if self._journals:
                self._journals[-1].extend(journal)
            return
        for mapping, key, old in reversed(journal):
            if old is _ABSENT:
                mapping.pop(key, None)
            else:
                mapping[key] = old

    def _lost_race(self) -> None:
        # Another writer stored an id the group took for new: every id is read again.
        self.checked.clear()

    def isolated(self, *, alone: bool = False) -> AbstractAsyncContextManager[None]:
        """A savepoint around one caller's work: if it raises, its writes roll back alone.
        ``alone`` (the transaction's only caller, the first scope): no savepoint, one round
        trip less; if it raises, the transaction is to be rolled back whole (#12)."""
        if alone and self._caller is None and not self._savepoint_open:
            return self._alone()
        return self._isolated()

    @asynccontextmanager
    async def _alone(self) -> AsyncIterator[None]:
        journal = self._begin()
        self._caller = _Caller(journal, alone=True)
        try:
            yield
        except BaseException:
            self._end(journal, kept=False)
            raise
        finally:
            self._caller = None
        self._end(journal, kept=True)

    @asynccontextmanager
    async def _isolated(self) -> AsyncIterator[None]:
        journal = self._begin()
        outer = self._caller
        if outer is not None:  # nested: a savepoint of its own, as any nesting
            # Its units of work take savepoints of their own too: rolling back to the outer
            # caller's would also undo this scope's savepoint.
            self._caller = _Caller(journal, clean=False)
            try:
                async with self._savepoint():
                    yield
            except BaseException:
                self._end(journal, kept=False)
                raise
            finally:
                self._caller = outer
            self._end(journal, kept=True)
            return
        name = self._SAVEPOINT
        taken = False
        try:
            await self._start()
            await self._conn.execute(
                f"RELEASE SAVEPOINT {name}; SAVEPOINT {name}"
                if self._savepoint_open
                else f"SAVEPOINT {name}"
            )
            self._savepoint_open = taken = True
            self._caller = _Caller(journal)
            try:
                yield
            finally:
                self._caller = None
        except BaseException:
            # Only to this caller's own savepoint: if taking it failed, the name may still be
            # the previous caller's, whose work must stand (the transaction is then aborted
            # and the group's commit fails as a whole).
            try:
                if taken:
                    await self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            finally:
                self._end(journal, kept=False)
            raise
        self._end(journal, kept=True)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[PostgresUnitOfWork]:
        caller = self._caller
        uow = PostgresUnitOfWork(self._conn, group=self)
        journal = self._begin()
        try:
            await self._start()
            if caller is not None and caller.clean:
                # Nothing written since the caller's savepoint: rolling back to it undoes this
                # unit alone, and a retry (ConcurrencyError) starts from the same clean state.
                # A caller alone has none: its transaction is rolled back whole instead.
                try:
                    yield uow
                except BaseException:
                    if not caller.alone:
                        await self._conn.execute(f"ROLLBACK TO SAVEPOINT {self._SAVEPOINT}")
                    raise
                caller.clean = False
            else:
                async with self._savepoint():  # nested: a savepoint
                    yield uow
        except BaseException as exc:
            self._end(journal, kept=False)
            if isinstance(exc, asyncpg.DeadlockDetectedError):
                # A cycle the server broke by failing this statement: with event ids, the
                # other writer waits for rows the group's earlier callers wrote, so this caller
                # run again in the same transaction would wait for it again (and be rolled
                # back again). The group's whole transaction runs again (docs/intake.md).
                raise LocksDeadlocked(str(exc)) from exc
            if isinstance(exc, asyncpg.UniqueViolationError):
                self._lost_race()
                if caller is not None and caller.alone and caller.clean:
                    # No savepoint to retry from: the group runs again with one.
                    raise NotIsolated(str(exc)) from exc
                raise ConcurrencyError(str(exc)) from exc
            raise
        self._end(journal, kept=True)
        self.committed += uow.committed


STREAM_IDS = """
WITH matching AS MATERIALIZED (
    SELECT stream_id FROM es_streams
    WHERE stream_id ~>=~ $1 AND stream_id ~<~ $2 AND version > 0
)
SELECT stream_id FROM matching ORDER BY stream_id LIMIT $3
"""
"""The streams of a prefix as its byte range (:func:`prefix_range`), which the
``text_pattern_ops`` index serves in any collation and on a generic plan (event store
migration 008, #12); a bound ``LIKE`` pattern read every stream. The range is read first
(MATERIALIZED), then ordered in the column's collation, as before: with the ORDER BY and the
LIMIT on the range itself, a generic plan, guessing a page is a tenth of the range, walked the
primary key from the first stream of all, filtering."""


class PostgresEventStore:
    def __init__(
        self, pool: asyncpg.Pool[Any], *, on_commit: Callable[[], None] | None = None
    ) -> None:
        self._pool = pool
        # Wakes an in-process outbox relay. Not NOTIFY: PostgreSQL serialises the commits of
        # every transaction that notified (a global lock held across the WAL flush), which
        # caps the write rate; a relay in another process polls instead.
        self._on_commit = on_commit

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[PostgresUnitOfWork]:
        lost: BaseException | None = None
        async with self._pool.acquire() as conn:
            session = conn.get_server_pid()
            ending = False
            try:
                async with conn.transaction():
                    uow = PostgresUnitOfWork(conn)
                    yield uow
                    # Its claims, last, in one sorted pass (#12, migration 011).
                    await _run_claims(conn, uow.claims)
                    await uow.settle_versions()
                    ending = True  # what is raised from here on is the COMMIT's
            except asyncpg.UniqueViolationError as exc:
                raise ConcurrencyError(str(exc)) from exc
            except asyncpg.DeadlockDetectedError as exc:
                # Rolled back whole by the server to break a cycle (e.g. two writers of the
                # same event ids on different streams, in opposite orders): run it again.
                raise LocksDeadlocked(str(exc)) from exc
            except Exception as exc:
                if not (ending and uow.written_at and lost_in_flight(exc)):
                    raise
                lost = exc
        if lost is not None:
            # Asked on a fresh connection, the lost one back in the pool (a pool of one
            # would otherwise wait for itself): committed, the unit ends as if it had heard.
            written = [Written(i, p) for i, p in uow.written_at.items()]
            await after_lost_commit(self._pool, written, lost, session=session)
        if uow.committed and self._on_commit is not None:
            self._on_commit()

    @asynccontextmanager
    async def guessing_unit_of_work(self) -> AsyncIterator[GuessingUnitOfWork]:
        """A unit of work that takes its streams for new and writes them in one statement
        committed by itself (:class:`GuessingUnitOfWork`, #12). Leaving it after decisions
        on its guess without the write that checks it raises :class:`GuessWrong`."""
        uow = GuessingUnitOfWork(self._pool)
        try:
            yield uow
            if uow.guessed and not uow.sent:
                raise GuessWrong("decided on a guess that no write checked")
        finally:
            if uow.committed and self._on_commit is not None:
                self._on_commit()

    def outbox_port(self) -> PostgresOutbox:
        """The outbox as a relay reads it (:class:`~branchline_shared.eventstore.ports.Outbox`)."""
        return PostgresOutbox(self._pool)

    @asynccontextmanager
    async def shared_transaction(self) -> AsyncIterator[SharedTransaction]:
        """One transaction that several units of work use in turn (group commit); the
        relay is woken once, after the one commit."""
        # Not asyncpg's ``transaction()``: the transaction is begun by the group's first
        # statement (``SharedTransaction.lock_streams``, #12), and ended here, as asyncpg's
        # would end it: rolled back if the group raises (or is cancelled), else committed.
        lost: BaseException | None = None
        async with self._pool.acquire() as conn:
            session = conn.get_server_pid()
            shared = SharedTransaction(conn)
            try:
                yield shared
                # Its callers' claims, last, in one sorted pass (#12, migration 011).
                await _run_claims(conn, shared.claims)
            except asyncpg.DeadlockDetectedError as exc:
                await shared.finish("ROLLBACK")
                raise LocksDeadlocked(str(exc)) from exc
            except BaseException:
                await shared.finish("ROLLBACK")
                raise
            try:
                await shared.finish("COMMIT")
            except Exception as exc:
                if not (shared.written and lost_in_flight(exc)):
                    raise
                lost = exc
        if lost is not None:
            # Every caller of the group is answered by what the one transaction left:
            # its callers' events (a caller rolled back to its savepoint left none of its).
            # Each event at the position its write drew: another writer's under the same id
            # (a concurrent resend) is not this transaction's (IdsTakenAfterLostCommit: the
            # group runs again, and the idempotency rules answer it, Round 25).
            written = [
                Written(i, stored.position.global_position) for i, stored in shared.written.items()
            ]
            await after_lost_commit(self._pool, written, lost, session=session)
        if shared.committed and self._on_commit is not None:
            self._on_commit()

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[StoredEvent]:
        rows = await self._pool.fetch(
            "SELECT event_id, stream_id, stream_version, global_position, submission_hash, "
            "envelope FROM es_events WHERE stream_id = $1 AND stream_version >= $2 "
            "ORDER BY stream_version LIMIT $3",
            stream_id,
            from_version,
            limit,
        )
        return [StoredEvent(_position(r), _recorded(r), r["submission_hash"]) for r in rows]

    async def stream_ids(self, prefix: str, *, limit: int = 1000) -> list[str]:
        """The ids of the streams that start with ``prefix`` and hold events, in order (e.g.
        every ``product-`` stream: the product shelf)."""
        low, high = prefix_range(prefix)
        rows = await self._pool.fetch(STREAM_IDS, low, high, limit)
        return [r["stream_id"] for r in rows]

    async def read_log(self, after: LogPosition, *, limit: int = 1000) -> list[LogRecord]:
        rows = await self._log_rows(after, limit, "envelope")
        return [
            LogRecord(LogPosition(r["tx"], r["global_position"]), _position(r), _recorded(r))
            for r in rows
        ]

    async def read_log_text(self, after: LogPosition, *, limit: int = 1000) -> list[LogText]:
        """:meth:`read_log` with each envelope as its stored JSON text, not read: for a reader
        that reads it itself (the followup rebuild, #12: it validated each envelope here, dumped
        it and validated it again)."""
        rows = await self._log_rows(after, limit, "recorded_at, envelope::text AS envelope")
        return [
            LogText(
                LogPosition(r["tx"], r["global_position"]),
                _position(r),
                r["recorded_at"],
                r["envelope"],
            )
            for r in rows
        ]

    async def _log_rows(self, after: LogPosition, limit: int, columns: str) -> list[Any]:
        # Only transactions below the snapshot's xmin are read: every one of them has ended,
        # so no row can still appear behind what we return (the projection-gap bug).
        return await self._pool.fetch(
            f"""
            SELECT tx_id::text::bigint AS tx, event_id, stream_id, stream_version,
                   global_position, {columns}
            FROM es_events
            WHERE (tx_id, global_position) > ($1::text::xid8, $2)
              AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY tx_id, global_position
            LIMIT $3
            """,  # noqa: S608 - columns named here, never a value
            str(after.tx_id),
            after.global_position,
            limit,
        )


@dataclass(frozen=True)
class LogText:
    """An event of the log as stored (:meth:`PostgresEventStore.read_log_text`)."""

    log_position: LogPosition
    position: StoredPosition
    recorded_at: datetime
    envelope: str
    """The envelope's JSON text, at the schema version it was recorded in."""


class PostgresOutbox:
    """:class:`~branchline_shared.eventstore.ports.Outbox` of a PostgreSQL event store."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def pending(self, limit: int) -> list[PendingPublication]:
        rows = await self._pool.fetch(
            "SELECT o.id, o.topic, o.message_key, e.global_position, e.envelope, o.requeued "
            "FROM es_outbox o JOIN es_events e USING (event_id) "
            "WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1",
            limit,
        )
        return [
            PendingPublication(
                r["id"],
                r["topic"],
                r["message_key"],
                r["global_position"],
                r["envelope"],
                r["requeued"],
            )
            for r in rows
        ]

    async def mark_published(
        self, outbox_ids: Sequence[int], positions: Sequence[tuple[int, int]] | None = None
    ) -> None:
        if positions is None:
            await self._pool.execute(
                "UPDATE es_outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                list(outbox_ids),
            )
            return
        await self._pool.execute(
            "UPDATE es_outbox o SET published_at = now(), published_partition = u.part, "
            "published_offset = u.off "
            "FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS u(id, part, off) "
            "WHERE o.id = u.id",
            list(outbox_ids),
            [p for p, _ in positions],
            [o for _, o in positions],
        )

    async def backlog(self) -> int:
        return int(
            await self._pool.fetchval("SELECT count(*) FROM es_outbox WHERE published_at IS NULL")
        )
