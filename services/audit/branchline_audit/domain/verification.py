"""Verifying a stored ledger: the chain, the index columns, prunes and the signed checkpoints.

:class:`~branchline_audit.domain.canonical.ChainVerifier` checks the hash chain. A stored ledger
has more that can be tampered with, and this auditor checks it all in one streaming pass:

- each index column (``event_id``, ``event_type``, ``client_id``, ...) equals its event's field;
- an entry is pruned (``pruned_at`` set) exactly when its event is a prune marker, and every
  pruned position is named by an ``audit.pruned`` entry of the ledger (a payload dropped behind
  the ledger's back is located);
- every checkpoint is signed by the log's key for the log's origin, and its root equals the
  RFC 6962 root recomputed from the entries at its size. A rewrite that recomputed every later
  hash passes the chain but not the checkpoints; it is then located between the last checkpoint
  that holds and the first that does not. A checkpoint larger than the ledger means entries were
  removed at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    PENDING_LEAVES,
    CanonicalisationError,
    ChainEntry,
    ChainState,
    ChainVerifier,
    chain_hash,
    encodes_event_after,
    entry_canonical_bytes,
    entry_head,
    format_appended_at,
    grow_by_leaves,
    proven_event_after,
    stored_bytes_problem,
    stored_event,
)
from branchline_audit.domain.merkle import HASH_SIZE, AlignedRange
from branchline_audit.domain.note import NoteError, Verifier, open_checkpoint
from branchline_audit.domain.records import (
    AUDIT_PRUNED,
    IndexColumns,
    NotAnEnvelope,
    index_columns,
    is_pruned_marker,
    pruned_ranges_of,
)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    entry: ChainEntry
    columns: IndexColumns
    pruned_at: datetime | bytes | None
    """Set when the row is pruned: a time, or its binary form as the verifier's scan reads
    it (only whether it is set is checked)."""
    unwritten: str | None = None
    """Set by the trail's readers (not the verifier's scan) when a time column of the row holds
    a time no append writes (an infinity, a year outside 1..9999), as PostgreSQL shows it
    (``appended_at holds 'infinity'``): the row was altered behind the ledger's back, and a
    reader refuses it as :class:`AlteredEntry` (#12)."""
    before_hash: bytes | None = None
    """The hash of the entry at the position before this one, when the reader read it with
    this one (a single entry, a page's first, a filtered read's entry whose position before is
    not in the read); None when not read, or when that entry is the one the reader holds
    before it (:class:`ServedCheck` links those itself)."""
    after_prev: bytes | None = None
    """The ``prev_hash`` of the entry at the position after this one, read likewise (a page's
    last, a single entry); None when there is none yet or it was not read. With it an entry
    rewritten together with its own recomputed hash is refused even when it is served alone
    or last (the entry after it no longer links to it, #12)."""
    signed_leaf: tuple[int, bytes | None] | None = field(default=None, compare=False)
    """On a read's last entry: the tree size of the smallest signed checkpoint covering it
    (the latest when none does yet) and the stored hash of the entry at that size (None when
    there is no such entry), which the reader holds against the checkpoint's signed root
    (Round 28); None when not read or no checkpoint is signed. What the read read beside the
    entry, not the entry: not compared."""


def signed_leaf_of(value: bytes) -> tuple[int, bytes | None]:
    """A ``signed_leaf`` column (a tree size's 8 bytes, big-endian, then the stored hash of
    the entry at that size, if any) as :attr:`StoredEntry.signed_leaf`."""
    return int.from_bytes(value[:8], "big"), (value[8:] or None)


class AlteredEntry(Exception):
    """An entry a reader met whose stored content is not what an append wrote: a time no
    append writes, or a column (a time, the event, its type, a hash, the position) that
    differs from what its hash covers. It was altered behind the ledger's back. The reader
    refuses it by name, never with its time's error and never hiding it (tamper evidence,
    D-11); verify locates every such entry."""

    rule = "D-11"

    def __init__(
        self, position: int, unwritten: str | None = None, *, mismatch: str | None = None
    ) -> None:
        self.position = position
        if unwritten is not None:
            what = f"{unwritten}, a time no append writes"
        else:
            what = f"{mismatch}: what is stored is not what its hash covers"
        self.detail = (
            f"the ledger entry at position {position} was altered behind the ledger's back: "
            f"{what} (tamper evidence, D-11); "
            "GET /v1/audit/verify locates every altered entry"
        )
        super().__init__(self.detail)


class UnsignedHistory(AlteredEntry):
    """A read whose covering signed checkpoint the stored ledger contradicts: the entry at
    the checkpoint's size (its last leaf) does not lead to the signed root, so an entry at
    or before it was rewritten with every later hash recomputed, or the entry itself was
    (Round 28). Refused by every reader as an altered entry (409 ``ledger-integrity``, D-11;
    an export's signed incomplete trailer), naming that position and the checkpoint; verify
    locates the rewrite between the last checkpoint that holds and the first that does not."""

    def __init__(
        self,
        tree_size: int,
        why: str,
        *,
        rewritten_after: int | None = None,
        refused: tuple[int, int] | None = None,
    ) -> None:
        self.position = tree_size
        self.why = why
        self.rewritten_after = rewritten_after
        """The size of a signed checkpoint below ``tree_size`` whose last leaf holds, where
        one was found (Round 32): the rewritten entry lies after it, at or before
        ``tree_size``; None when none below holds or none was looked for."""
        self.refused = refused
        """The positions (first, last) of the entries the refused read would have served,
        where it served entries (a hold's or relationship end's read, and the checkpointer,
        serve none)."""
        where = (
            f"the entry rewritten lies between positions {rewritten_after + 1} and "
            f"{tree_size} (the signed checkpoint of tree size {rewritten_after} holds)"
            if rewritten_after is not None
            else f"the entry rewritten lies at or before position {tree_size}"
        )
        if refused is None:
            read = ""
        elif refused[0] == refused[1]:
            read = f"; the entry at position {refused[0]} is refused with it"
        else:
            read = f"; the entries at positions {refused[0]} to {refused[1]} are refused with it"
        self.detail = (
            f"the ledger entry at position {tree_size} was altered behind the ledger's back: "
            f"{why}: the ledger up to it is not what the signed checkpoint of tree size "
            f"{tree_size} holds (a hash rewritten, with or without every later one; tamper "
            f"evidence, D-11): {where}{read}; GET /v1/audit/verify locates it"
        )
        Exception.__init__(self, self.detail)

    def refusing(self, first: int, last: int) -> UnsignedHistory:
        """This refusal, naming the entries (positions ``first`` to ``last``) of the read it
        refuses."""
        return UnsignedHistory(
            self.position, self.why, rewritten_after=self.rewritten_after, refused=(first, last)
        )


_NO_ROW_HEAD = (None,) * 7
"""What :func:`_columns_agree` does not read of a row (its first seven fields)."""


class ServedCheck:
    """What a reader checks of every entry it serves (tamper evidence, D-11, #12): its times
    are ones an append writes (:attr:`StoredEntry.unwritten`); its hash is recomputed from
    the stored columns, over the canonical bytes verify hashes, and equals the stored hash;
    those bytes encode the entry's position, its ``appended_at`` column and the event served;
    its index columns (type, client, actor, branch, ``occurred_at``, event id) are the
    event's; and, where the reader holds the entry before it (consecutive positions, also
    across pages of one read: keep one check per read), its ``prev_hash`` is that entry's
    hash (position 1's the genesis); where the reader read the neighbours' links with it
    (:attr:`StoredEntry.before_hash`, :attr:`StoredEntry.after_prev`: a single entry, a
    page's first and last, a filtered read's entries), its ``prev_hash`` is the hash before
    it and its hash is the ``prev_hash`` after it, so that an entry rewritten with its own
    hash recomputed is refused wherever it stands in a read (named at the position after
    it, as verify names it). :meth:`altered` names the first thing that does not hold, as
    verify words it.

    A sound entry is proven by the verifier's fast path (:func:`encodes_event_after`: the
    stored bytes are the head of the served append time, the served event's JCS text and
    the position's tail; one SHA-256; the columns' test): what is not proven so is checked
    in full, which says what differs or takes the entry (an event that is not plain ASCII
    JSON, an entry written before its bytes were stored, a pruned one: its linkage and its
    marker only, as verify). Pure: no I/O."""

    __slots__ = ("_head", "_last")

    def __init__(self) -> None:
        self._head: tuple[str, bytes | None] = ("", None)
        """The last append time met and its entries' head (None: no time an append writes);
        one, not one per time, so that an export's memory stays flat (entries in position
        order share their append time in runs: an append writes many at one time)."""
        self._last: tuple[int, bytes] = (0, GENESIS_PREV_HASH)
        """The position and hash of the last entry checked (position 0: the genesis)."""

    def altered(self, stored: StoredEntry) -> AlteredEntry | None:
        """Why ``stored`` may not be served, as :class:`AlteredEntry`, or None."""
        entry = stored.entry
        position = entry.position
        last_position, last_hash = self._last
        # After an altered entry the next one's link is not checked (verify's resync: it may
        # link to either hash), so that only the altered one is named.
        self._last = (-1, b"")
        if stored.unwritten is not None:
            return AlteredEntry(position, stored.unwritten)
        before = stored.before_hash
        if before is None and position == last_position + 1:
            before = last_hash
        if before is not None and entry.prev_hash != before:
            return AlteredEntry(
                position,
                mismatch=f"prev_hash does not equal the hash of position {position - 1}",
            )
        if not self._proven(stored):
            problem = _served_problem(stored)
            if problem is not None:
                return AlteredEntry(position, mismatch=problem)
        after = stored.after_prev
        if after is not None and after != entry.hash:
            # Sound by itself, but the entry after it does not link to it: it was rewritten
            # with its hash recomputed (or that entry's link was). Named where verify names
            # it, the entry after, so that every reader names the same position (#12).
            return AlteredEntry(
                position + 1,
                mismatch=f"prev_hash does not equal the hash of position {position}",
            )
        self._last = (position, entry.hash)
        return None

    def _proven(self, stored: StoredEntry) -> bool:
        """The verifier's fast path for a stored entry (``LedgerAuditor._take_rows``): True
        when it provably holds; False means "not proven"."""
        entry = stored.entry
        canonical, event = entry.canonical, entry.event
        if canonical is None or stored.pruned_at is not None or type(event) is not dict:
            return False
        seen, head = self._head
        if seen != entry.appended_at:
            try:
                head = entry_head(entry.appended_at)
            except CanonicalisationError:
                head = None
            self._head = (entry.appended_at, head)
        if head is None or not encodes_event_after(canonical, head, entry.position, event):
            return False
        if "data" not in event and is_pruned_marker(event):
            return False
        c = stored.columns
        row = (
            *_NO_ROW_HEAD,
            c.event_id,
            c.event_type,
            c.client_id,
            c.actor_id,
            c.branch_id,
            c.occurred_at,
        )
        return (
            _columns_agree(event, row)
            and hashlib.sha256(entry.prev_hash + canonical).digest() == entry.hash
        )


def _served_problem(stored: StoredEntry) -> str | None:
    """What verify would say of ``stored`` alone (its link aside), or None: the hash
    recomputed from its content (its stored bytes, or for an entry written before they were
    stored the bytes its columns give), those bytes' position, time and event, its
    columns."""
    entry = stored.entry
    if len(entry.hash) != HASH_SIZE:
        return f"hash must be {HASH_SIZE} bytes"
    if not entry.pruned:
        try:
            hashed = (
                entry.canonical
                if entry.canonical is not None
                else entry_canonical_bytes(entry.position, entry.event, entry.appended_at)
            )
            recomputed = chain_hash(entry.prev_hash, hashed)
        except CanonicalisationError as error:
            return f"entry has no canonical bytes: {error}"
        except ValueError as error:  # a prev_hash that is no hash
            return str(error)
        if recomputed != entry.hash:
            return "hash does not match the recomputed hash of the entry's content"
        problem = stored_bytes_problem(entry)
        if problem is not None:
            return problem
    return column_problem(stored)


def column_problem(stored: StoredEntry) -> str | None:
    """Why the stored columns of ``stored`` do not agree with its event (the index columns,
    whether it is pruned), or None (the verifier's check, ``LedgerAuditor._column_problem``)."""
    event = stored.entry.event
    if not event and stored.entry.canonical is None and not stored.entry.pruned:
        return "entry holds neither its event nor canonical bytes"
    marker = is_pruned_marker(event)
    if marker != (stored.pruned_at is not None) or marker != stored.entry.pruned:
        return "pruned_at does not agree with the entry's event (payload altered?)"
    try:
        expected = index_columns(event)
    except NotAnEnvelope as error:
        return f"event is not an envelope: {error}"
    for column in fields(IndexColumns):
        if getattr(expected, column.name) != getattr(stored.columns, column.name):
            return f"column {column.name} does not match the entry's event"
    return None


def refuse_altered(entries: Iterable[StoredEntry], check: ServedCheck | None = None) -> None:
    """Raise :class:`AlteredEntry` for the first of ``entries`` a reader may not serve
    (:class:`ServedCheck`; ``check`` carries the entry before them, one read's pages)."""
    check = ServedCheck() if check is None else check
    for stored in entries:
        altered = check.altered(stored)
        if altered is not None:
            raise altered


def sound_before_altered(
    entries: Sequence[StoredEntry], check: ServedCheck
) -> tuple[Sequence[StoredEntry], AlteredEntry | None]:
    """The entries before the first of ``entries`` a reader may not serve, and why that one
    may not be (None: all may be): a stream sends every sound entry before an altered one
    (#12)."""
    for index, stored in enumerate(entries):
        altered = check.altered(stored)
        if altered is not None:
            return entries[:index], altered
    return entries, None


ROW_FIELDS = (
    "position",
    "prev_hash",
    "hash",
    "canonical",
    "event",
    "appended_at",
    "pruned_at",
    "event_id",
    "event_type",
    "client_id",
    "actor_id",
    "branch_id",
    "occurred_at",
)
"""A stored row as :meth:`LedgerAuditor.feed_row` takes it: the ledger table's columns in
this order (``event`` decoded from its JSON or as its JSON text, ``appended_at`` and
``pruned_at`` as times). The verifier's scan reads ``appended_at``, ``occurred_at`` and
``pruned_at`` in PostgreSQL's binary form (:func:`pg_time`) and ``event_id`` as its text
instead: a row is then read without a Python datetime and UUID made per row (#12), and a
time no append writes (an infinity, a year past 9999, altered behind the ledger's back) is
read as any other and reported as the bad entry it is; either form is taken."""

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PG_INFINITY = 0x7FFF_FFFF_FFFF_FFFF


def pg_time(sent: bytes) -> datetime:
    """A ``timestamptz`` from its binary form (``timestamptz_send``: microseconds since
    2000-01-01 UTC, big-endian), exactly as asyncpg decodes the column: its infinities as
    the naive extremes, any other value as an aware UTC time (OverflowError past year
    9999)."""
    microseconds = int.from_bytes(sent, "big", signed=True)
    if microseconds == _PG_INFINITY:
        return datetime.max  # noqa: DTZ901 - as asyncpg decodes infinity
    if microseconds == -_PG_INFINITY - 1:
        return datetime.min  # noqa: DTZ901 - as asyncpg decodes -infinity
    return _PG_EPOCH + timedelta(microseconds=microseconds)


def _typed(row: Sequence[Any]) -> Sequence[Any]:
    """``row`` with ``occurred_at`` as a time and ``event_id`` as a UUID when the scan read
    them in their cheaper forms (:data:`ROW_FIELDS`). An ``occurred_at`` past Python's years
    stays in its binary form, which equals no event's time: the column check reports it.
    ``appended_at`` is left to :func:`appended_text`."""
    event_id, occurred_at = row[7], row[12]
    if type(event_id) is str:
        event_id = uuid.UUID(event_id)
    if type(occurred_at) is bytes:
        with contextlib.suppress(OverflowError):
            occurred_at = pg_time(occurred_at)
    return (*row[:7], event_id, *row[8:12], occurred_at)


def appended_text(appended_at: datetime | bytes) -> str:
    """``appended_at`` (a time, or the scan's binary form of one) in the one form that is
    hashed (:func:`format_appended_at`); for a time no append writes (an infinity, which
    asyncpg reads as a naive extreme, or a year outside Python's) a text saying so, which no
    canonical form takes: the chain reports the entry at its position instead of verify
    failing with the time's error."""
    try:
        moment = pg_time(appended_at) if isinstance(appended_at, bytes) else appended_at
        return format_appended_at(moment)
    except (CanonicalisationError, OverflowError) as error:
        return f"not a time an append writes ({error})"


def _decoded(row: Sequence[Any]) -> Sequence[Any]:
    """``row`` with its ``event`` decoded when it came as JSON text (the verifier's scan reads
    it so: asyncpg then makes a ``str`` in C instead of calling a Python codec per row, #12).
    Text that is not JSON (no jsonb column gives such) decodes to an empty object, which the
    full checks refuse; :meth:`LedgerAuditor.feed_row` reports it first."""
    event = row[4]
    if event is None:
        # Stored once, inside the canonical bytes (migration 006, #12); neither: ``{}``,
        # which the column checks report.
        canonical = row[3]
        decoded = {} if canonical is None else stored_event(bytes(canonical), row[0])
    elif type(event) is not str:
        return row
    else:
        try:
            decoded = orjson.loads(event)
        except orjson.JSONDecodeError:
            decoded = {}
    return (*row[:4], decoded, *row[5:])


def stored_entry(row: Sequence[Any]) -> StoredEntry:
    """The entry of a stored row (:data:`ROW_FIELDS` order) as the chain and the column checks
    see it."""
    (
        position,
        prev_hash,
        hash_,
        canonical,
        event,
        appended_at,
        pruned_at,
        event_id,
        event_type,
        client_id,
        actor_id,
        branch_id,
        occurred_at,
    ) = _decoded(_typed(row))
    return StoredEntry(
        entry=ChainEntry(
            position=position,
            event=event,
            appended_at=appended_text(appended_at),
            prev_hash=bytes(prev_hash),
            hash=bytes(hash_),
            pruned=pruned_at is not None or is_pruned_marker(event),
            canonical=None if canonical is None else bytes(canonical),
        ),
        columns=IndexColumns(
            event_id=event_id,
            event_type=event_type,
            client_id=client_id,
            actor_id=actor_id,
            branch_id=branch_id,
            occurred_at=occurred_at,
        ),
        pruned_at=pruned_at,
    )


def reader_entries(rows: Iterable[Iterable[Any]]) -> list[StoredEntry]:
    """The entries of the trail readers' rows (a page, an export's page): each row the
    :data:`ROW_FIELDS` with the three times in their binary form (:func:`pg_time`), then the
    words saying which time no append writes, or None (``unwritten``).

    The entry of each row is the one :func:`stored_entry` makes, then marked
    :attr:`StoredEntry.unwritten`, or else its ``pruned_at`` read as a time (what a reader
    did per row until Round 18), without its per-row copies of the row (#12): the row is
    unpacked once, and an append time's text (a ``strftime`` and a time made, ~5 µs) is
    computed once per distinct stored instant of the page (an append writes all its entries
    at one instant), a pure function of those 8 bytes. Tested against that reference in
    tests/unit/audit/test_audit_reader_entries.py."""
    texts: dict[bytes, str] = {}
    entries: list[StoredEntry] = []
    for row in rows:
        (
            position,
            prev_hash,
            hash_,
            canonical,
            event,
            appended_at,
            pruned_at,
            event_id,
            event_type,
            client_id,
            actor_id,
            branch_id,
            occurred_at,
            unwritten,
            *neighbours,
        ) = row
        if type(event_id) is str:
            event_id = uuid.UUID(event_id)
        if type(occurred_at) is bytes:
            with contextlib.suppress(OverflowError):
                occurred_at = pg_time(occurred_at)
        if event is None:
            event = {} if canonical is None else stored_event(bytes(canonical), position)
        elif type(event) is str:
            try:
                event = orjson.loads(event)
            except orjson.JSONDecodeError:
                event = {}
        if type(appended_at) is bytes:
            text = texts.get(appended_at)
            if text is None:
                text = texts[appended_at] = appended_text(appended_at)
        else:
            text = appended_text(appended_at)
        pruned = pruned_at is not None or is_pruned_marker(event)
        if unwritten is None and type(pruned_at) is bytes:
            pruned_at = pg_time(pruned_at)
        entries.append(
            StoredEntry(
                entry=ChainEntry(
                    position=position,
                    event=event,
                    appended_at=text,
                    prev_hash=bytes(prev_hash),
                    hash=bytes(hash_),
                    pruned=pruned,
                    canonical=None if canonical is None else bytes(canonical),
                ),
                columns=IndexColumns(
                    event_id=event_id,
                    event_type=event_type,
                    client_id=client_id,
                    actor_id=actor_id,
                    branch_id=branch_id,
                    occurred_at=occurred_at,
                ),
                pruned_at=pruned_at,
                unwritten=unwritten,
                before_hash=None
                if not neighbours or neighbours[0] is None
                else bytes(neighbours[0]),
                after_prev=None
                if not neighbours or neighbours[1] is None
                else bytes(neighbours[1]),
                signed_leaf=None
                if len(neighbours) < 3 or neighbours[2] is None
                else signed_leaf_of(bytes(neighbours[2])),
            )
        )
    return entries


def _columns_agree(event: dict[str, Any], row: Sequence[Any]) -> bool:
    """True when every index column of ``row`` provably equals what :func:`index_columns`
    derives from ``event`` (which is then no error either); False means "not proven" and the
    full check says what differs. Comparing the event id's text with the column's avoids
    parsing it (a matching canonical text parses to the same UUID)."""
    event_id = event.get("event_id")
    event_type = event.get("type")
    if (
        type(event_id) is not str
        or event_id != str(row[7])
        or type(event_type) is not str
        or not event_type
        or event_type != row[8]
    ):
        return False
    # Each text column tested in place, not a call per column per entry (#12)
    value = event.get("client_id")
    if (value if isinstance(value, str) else None) != row[9]:
        return False
    value = event.get("branch_id")
    if (value if isinstance(value, str) else None) != row[11]:
        return False
    actor = event.get("actor")
    value = actor.get("id") if isinstance(actor, dict) else None
    if (value if isinstance(value, str) else None) != row[10]:
        return False
    occurred = event.get("occurred_at")
    if not isinstance(occurred, str):
        return row[12] is None
    try:
        occurred_at = datetime.fromisoformat(occurred)
    except ValueError:
        return False
    stored = row[12]
    if type(stored) is bytes:  # the scan's binary form (:func:`pg_time`): the same instant
        return (
            occurred_at.tzinfo is not None
            and ((occurred_at - _PG_EPOCH) // _MICROSECOND).to_bytes(8, "big", signed=True)
            == stored
        )
    return occurred_at.tzinfo is not None and occurred_at == stored


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str


@dataclass(frozen=True, slots=True)
class RefusalHint:
    """Where a refusal located a rewrite of the ledger, as stored for the next process
    (``audit_refusal_hints``, #12, Round 36): the signed checkpoint found to hold (None when
    none did) and the next one, found not to. A cache, never evidence: a reader proves both
    again before it names them (``signed_leaves._last_holding_below``), so a wrong, stale or
    forged hint costs only time."""

    held: int | None
    failing: int

    def fits(self, refused: int) -> bool:
        """Whether the hint could answer a refusal at the checkpoint of size ``refused``: a
        pair in order at or below it (the failing one may be the refused one itself). One
        that does not is not even checked: the refusal halves as without a hint."""
        if not 0 < self.failing <= refused:
            return False
        return self.held is None or 0 < self.held < self.failing


@dataclass(frozen=True, slots=True)
class LedgerVerdict:
    """Body of ``GET /v1/audit/verify`` (plus ``reason`` and checkpoint diagnostics)."""

    ok: bool
    entries: int
    head: str
    first_bad_position: int | None
    reason: str | None
    checkpoints_checked: int
    bad_checkpoint: int | None
    bad_positions: tuple[int, ...] = ()
    """Every bad position found (the first 1,000, ascending): verification goes on past a bad
    entry, so one poisoned row never hides a later rewrite."""
    bad_count: int = 0


class LedgerAuditor:
    """Feed every stored entry in position order, then ask for :meth:`verdict`. A bad entry
    is recorded and verification goes on (the chain from the entry's stored hash)."""

    def __init__(
        self,
        checkpoints: Sequence[StoredCheckpoint],
        *,
        verifier: Verifier | None,
        origin: str,
    ) -> None:
        self._checkpoints = sorted(checkpoints, key=lambda c: c.tree_size)
        self._chain = self._new_chain()
        self._appended_at: tuple[datetime | bytes, bytes] | None = None
        """The last append time seen and the head of its entries' canonical bytes (an append
        writes many entries at one time)."""
        self._next_checkpoint = 0
        self._last_good_size = 0
        self._checked = 0
        self._bad: tuple[int, str] | None = None
        """A problem found after the entries (removed at the end, unnamed prunes)."""
        self._bad_checkpoint: int | None = None
        self._pruned: list[int] = []
        self._covered: list[tuple[int, int]] = []
        self._signature_problem = self._check_signatures(verifier, origin)
        self._skip_empty_checkpoints()
        self._due: frozenset[int] = self._due_sizes()
        """The positions at which :meth:`_check_checkpoint_at` can check anything (the fast
        path calls it only there)."""

    def _new_chain(self) -> ChainVerifier:
        return ChainVerifier(
            keep_going=True,
            tree_leaves=self._checkpoints[-1].tree_size if self._checkpoints else 0,
        )

    def joins(self, segment: SegmentResult) -> bool:
        """Whether ``segment``, verified apart from where this auditor stands, is what feeding
        its rows here would have found (then :meth:`absorb` takes it; otherwise its rows are
        fed here): it read no row, or it started from this very chain state, or its first
        entry is at the position expected here and links both here and where its verifier
        assumed. An entry whose link holds is judged by its own columns alone from then on,
        so every later entry of the segment is too."""
        if segment.rows == 0:
            return True
        if segment.trees is not None and self._chain.entries != segment.segment.low:
            return False  # its subtrees are aligned from leaf `low`: rows are missing before
        state = self._chain.state()
        if state == segment.start:
            return True
        first = segment.first_prev_hash
        return (
            state.expected == segment.start.expected
            and first == segment.start.prev
            and self._chain.links(first)
        )

    def absorb(self, segment: SegmentResult) -> None:
        """Take a segment that :meth:`joins` here as if its rows had been fed: its marks and
        checkpoint checks in the order they arose, the tree grown by its leaves up to each
        check, its pruned positions and the prunes it names, its end state."""
        if segment.rows == 0:
            return  # no row: the state is this auditor's, not the one the segment assumed
        chain = self._chain
        checks = iter(segment.trees or ())
        for row, position, reason in segment.events:
            if row < 0:
                chain.mark_bad(position, reason)
                continue
            kept = chain.tree_with((), 0)
            chain.set_tree(chain.tree_with(next(checks), row + 1))
            self._check_checkpoint_at(position)
            chain.set_tree(kept)
        if segment.trees is not None:
            chain.set_tree(chain.tree_with(segment.trees[-1], segment.rows))
        elif self._checkpoints:
            raise ValueError("a segment verified without its subtrees cannot grow the tree")
        chain.resume(segment.end, segment.rows)
        self._pruned.extend(segment.pruned)
        self._covered.extend(segment.covered)

    def _check_signatures(self, verifier: Verifier | None, origin: str) -> str | None:
        if verifier is None:
            return None
        for checkpoint in self._checkpoints:
            try:
                opened = open_checkpoint(checkpoint.note, [verifier], origin=origin)
            except NoteError as error:
                self._bad_checkpoint = checkpoint.tree_size
                return f"checkpoint of tree size {checkpoint.tree_size} is not signed: {error}"
            if opened.size != checkpoint.tree_size or opened.root != checkpoint.root_hash:
                self._bad_checkpoint = checkpoint.tree_size
                return (
                    f"checkpoint at tree size {checkpoint.tree_size}: the stored size or root "
                    "differs from the signed note"
                )
        return None

    def _skip_empty_checkpoints(self) -> None:
        while (
            self._next_checkpoint < len(self._checkpoints)
            and self._checkpoints[self._next_checkpoint].tree_size == 0
        ):
            self._next_checkpoint += 1
            self._checked += 1

    def feed(self, stored: StoredEntry) -> bool:
        """Check the next entry; False if it is bad (verification goes on with the next)."""
        entry = stored.entry
        problem = self._column_problem(stored)
        if problem is not None:
            self._chain.mark_bad(entry.position, problem)
        good = self._chain.feed(entry) and problem is None
        if entry.pruned:
            self._pruned.append(entry.position)
        elif good:
            self._covered.extend(pruned_ranges_of(entry.event))
        self._check_checkpoint_at(entry.position)
        return good

    def feed_row(self, row: Sequence[Any]) -> bool:
        """:meth:`feed` for a stored row (:data:`ROW_FIELDS`), by the fast path when it
        proves the entry good: its stored bytes are the canonical bytes of its position, time
        and ``event`` column, type for type (:func:`encodes_event`: a column holding ``1.0``
        or ``true`` where the bytes hold ``1`` is not taken), the index columns agree with
        it, it is not pruned, and its hash and link hold (:meth:`ChainVerifier.accept`). Every
        check of :meth:`feed` is made, in cheaper form; whatever is not proven so goes through
        :meth:`feed`, which finds and reports it. ``event`` may come as its JSON text
        (:data:`ROW_FIELDS`): it is decoded here, once."""
        if row[4] is None:
            return self._take_rows((row,))
        return self._feed_with_event(row)

    def feed_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """:meth:`feed_row` for each of ``rows``, in order (a page of the ledger's scan):
        the same checks and verdict, with the loop over a page's rows in one Python frame
        instead of two calls per row (#12)."""
        self._take_rows(rows)

    def _feed_with_event(self, row: Sequence[Any]) -> bool:
        """:meth:`feed_row` for a row whose ``event`` column is set (entries written before
        migration 006)."""
        canonical, event, appended_at, pruned_at = row[3], row[4], row[5], row[6]
        if type(event) is str:
            try:
                event = orjson.loads(event)
            except orjson.JSONDecodeError:
                self._chain.mark_bad(row[0], "column event is not JSON")
                return self.feed(stored_entry(row))
        if (
            canonical is not None
            and pruned_at is None
            and type(event) is dict
            and (head := self._head_of(appended_at)) is not None
            and encodes_event_after(canonical, head, row[0], event)
            and self._accepted_proven(event, row)
        ):
            return True
        return self.feed(stored_entry(row))

    def _take_rows(self, rows: Iterable[Sequence[Any]]) -> bool:
        """:meth:`feed_row` for each of ``rows``; whether all were good. An entry that stores
        its event only inside its canonical bytes (migration 006, #12; every row of a current
        ledger) is taken here when the bytes provably are the canonical bytes of the event
        they hold at the row's position and time (:func:`proven_event_after`), that event is
        no prune marker, the index columns agree with it and its hash and link hold; anything
        else goes through :meth:`feed`, which finds and reports it.

        :meth:`_accepted_proven` and :meth:`_head_of`'s cache written out, and the checkpoint
        test made only at a position where one is due (:attr:`_due`): each Python call saved
        here is saved per entry (#12). The same checks as :meth:`_accepted_proven`, in the
        same order."""
        good = True
        accept = self._chain.accept  # the auditor's chain is never replaced
        for row in rows:
            if row[4] is not None:
                if not self._feed_with_event(row):
                    good = False
                continue
            position, canonical = row[0], row[3]
            if canonical is not None and row[6] is None:
                appended_at = row[5]
                seen = self._appended_at
                head = (
                    seen[1]
                    if seen is not None and seen[0] == appended_at
                    else self._head_of(appended_at)
                )
                event = None if head is None else proven_event_after(canonical, head, position)
                if (
                    event is not None
                    # is_pruned_marker(event) is False for every event holding "data"
                    and ("data" in event or not is_pruned_marker(event))
                    and _columns_agree(event, row)
                    and accept(position, row[1], row[2], canonical)
                ):
                    if event.get("type") == AUDIT_PRUNED:  # pruned_ranges_of names no other
                        self._covered.extend(pruned_ranges_of(event))
                    if position in self._due:
                        self._check_checkpoint_at(position)
                    continue
            if not self.feed(stored_entry(row)):
                good = False
        return good

    def _accepted_proven(self, event: dict[str, Any], row: Sequence[Any]) -> bool:
        """The rest of the fast path for an entry whose stored bytes are proven the canonical
        bytes of ``event`` at its position and time: the event is no prune marker, the index
        columns agree with it, and its hash and link hold; then it is taken."""
        position, canonical = row[0], row[3]
        if (
            not is_pruned_marker(event)
            and _columns_agree(event, row)
            and self._chain.accept(position, row[1], row[2], canonical)
        ):
            self._covered.extend(pruned_ranges_of(event))
            self._check_checkpoint_at(position)
            return True
        return False

    def _head_of(self, appended_at: datetime | bytes) -> bytes | None:
        """The head of the canonical bytes of entries appended at ``appended_at``, computed
        once per append time (an append writes many entries at one time); None for a time no
        append writes (:func:`appended_text`), whose entries the full checks report."""
        seen = self._appended_at
        if seen is None or seen[0] != appended_at:
            try:
                head = entry_head(appended_text(appended_at))
            except CanonicalisationError:
                return None
            seen = self._appended_at = (appended_at, head)
        return seen[1]

    def _column_problem(self, stored: StoredEntry) -> str | None:
        return column_problem(stored)

    def _due_sizes(self) -> frozenset[int]:
        """The tree size of the next checkpoint to check (none once all are checked)."""
        if self._next_checkpoint < len(self._checkpoints):
            return frozenset((self._checkpoints[self._next_checkpoint].tree_size,))
        return frozenset()

    def _check_checkpoint_at(self, position: int) -> None:
        while (
            self._next_checkpoint < len(self._checkpoints)
            and self._checkpoints[self._next_checkpoint].tree_size == position
        ):
            checkpoint = self._checkpoints[self._next_checkpoint]
            root = self._chain.verdict().tree_root
            explained = any(  # a bad entry found in this range changes the root already
                self._last_good_size < p <= checkpoint.tree_size
                for p in self._chain.verdict().bad_positions
            )
            if root != checkpoint.root_hash.hex() and not explained:
                self._chain.mark_bad(
                    self._last_good_size + 1,
                    f"the root of checkpoint {checkpoint.tree_size} does not match the entries: "
                    f"history between positions {self._last_good_size + 1} and "
                    f"{checkpoint.tree_size} was rewritten",
                )
            if root != checkpoint.root_hash.hex() and self._bad_checkpoint is None:
                self._bad_checkpoint = checkpoint.tree_size
            self._last_good_size = position
            self._next_checkpoint += 1
            self._checked += 1
            self._due = self._due_sizes()

    def verdict(self) -> LedgerVerdict:
        chain = self._chain.verdict()
        bad = self._bad
        if bad is None and chain.first_bad_position is not None:
            bad = (chain.first_bad_position, chain.reason or "chain broken")
        positions = sorted(set(chain.bad_positions))
        count = chain.bad_count
        if positions and bad is not None and positions[0] < bad[0]:
            bad = (positions[0], bad[1])
        if bad is None and self._next_checkpoint < len(self._checkpoints):
            size = self._checkpoints[self._next_checkpoint].tree_size
            bad = (
                chain.entries + 1,
                f"a checkpoint of tree size {size} was signed but the ledger ends at "
                f"{chain.entries}: entries were removed from the end",
            )
            self._bad_checkpoint = size
        if bad is not None and bad[0] not in positions:
            positions = sorted([*positions, bad[0]])
            count += 1
        uncovered = self._first_uncovered_prune()
        if uncovered is not None and uncovered not in positions:
            positions = sorted([*positions, uncovered])
            count += 1
        if uncovered is not None and (bad is None or uncovered < bad[0]):
            bad = (uncovered, "entry is pruned but no audit.pruned entry names it")
        if bad is None and self._signature_problem is not None:
            return LedgerVerdict(
                ok=False,
                entries=chain.entries,
                head=chain.head,
                first_bad_position=None,
                reason=self._signature_problem,
                checkpoints_checked=self._checked,
                bad_checkpoint=self._bad_checkpoint,
                bad_positions=(),
                bad_count=0,
            )
        return LedgerVerdict(
            ok=bad is None,
            entries=chain.entries,
            head=chain.head,
            first_bad_position=None if bad is None else bad[0],
            reason=None if bad is None else bad[1],
            checkpoints_checked=self._checked,
            bad_checkpoint=self._bad_checkpoint,
            bad_positions=tuple(positions[:1000]),
            bad_count=count,
        )

    def _first_uncovered_prune(self) -> int | None:
        """The first pruned position no ``audit.pruned`` entry names (both lists sorted:
        one merge pass)."""
        runs = sorted(self._covered)
        run = 0
        for position in self._pruned:  # ascending: fed in position order
            while run < len(runs) and runs[run][1] < position:
                run += 1
            if run == len(runs) or runs[run][0] > position:
                return position
        return None


# ---------------------------------------------------------------- segments (#12)
#
# A ledger can be verified in segments, position ranges each checked in a process of its
# own and joined in order (:meth:`LedgerAuditor.joins`, :meth:`LedgerAuditor.absorb`). A
# segment's verifier cannot know the chain state its first entry meets; it assumes that entry
# is at the first position of its range and links (its own ``prev_hash``). The join checks
# both; a segment that does not join is verified again where the state is known, so the
# verdict is the sequential one, mark for mark.


@dataclass(frozen=True, slots=True)
class Segment:
    """Ledger positions ``low < position <= high`` (``high`` None: to the end, wherever the
    ledger ends by the time it is read)."""

    low: int
    high: int | None


def split_ledger(size: int, parts: int) -> list[Segment]:
    """Positions ``1..size`` in ``parts`` ranges of about equal length, the last one open (an
    entry appended meanwhile, or moved past the end, is read as sequentially)."""
    parts = max(1, min(parts, size))
    bounds = [size * i // parts for i in range(parts)]
    return [Segment(low, bounds[i + 1] if i + 1 < parts else None) for i, low in enumerate(bounds)]


@dataclass(frozen=True, slots=True)
class SegmentResult:
    """What a segment's verifier found, for :meth:`LedgerAuditor.absorb`."""

    segment: Segment
    rows: int
    start: ChainState
    """The state it assumed before its first entry."""
    first_prev_hash: bytes
    """Its first entry's ``prev_hash`` (empty when it read no row)."""
    end: ChainState
    events: tuple[tuple[int, int, str], ...]
    """In order: ``(-1, position, reason)`` for each bad mark, ``(row, position, "")`` for
    each row (0-based within the segment) at a checkpoint's tree size."""
    trees: tuple[tuple[tuple[int, bytes], ...], ...] | None
    """The complete subtrees ``(level, root)`` its rows' Merkle leaves form, aligned from leaf
    ``segment.low``: as at each checkpoint check (in order), then at its end (None: no
    checkpoint asked for)."""
    pruned: tuple[int, ...]
    covered: tuple[tuple[int, int], ...]


class _SegmentChain(ChainVerifier):
    """A chain verifier that records its marks and its leaves' subtrees instead of keeping
    them. The entry hashes wait (at most :data:`PENDING_LEAVES`) and are folded into the
    subtrees when they are read (:meth:`settled_nodes`), a level at a time, as the one pass
    grows its tree (:func:`grow_by_leaves`, #12)."""

    __slots__ = ("_waiting", "events", "leaves", "trees")

    def __init__(self, start: ChainState, *, want_leaves: bool) -> None:
        super().__init__(
            start_position=start.expected, prev_hash=start.prev, keep_going=True, tree_leaves=0
        )
        self.events: list[tuple[int, int, str]] = []
        self.leaves = AlignedRange(start.expected - 1) if want_leaves else None
        self.trees: list[tuple[tuple[int, bytes], ...]] = []
        self._waiting: list[bytes] = []

    def settled_nodes(self) -> tuple[tuple[int, bytes], ...]:
        """The subtrees of every entry taken so far (:attr:`AlignedRange.nodes`)."""
        leaves = self.leaves
        assert leaves is not None
        if self._waiting:
            grow_by_leaves(leaves, self._waiting)
            self._waiting.clear()
        return leaves.nodes

    def assume_link(self, prev_hash: bytes) -> None:
        self._prev = prev_hash

    def mark_bad(self, position: int, reason: str) -> None:
        # The joining auditor marks them in order, deduplicated as there (its list decides).
        self.events.append((-1, position, reason))

    def _grow_tree(self, hash_: bytes) -> None:
        if self.leaves is not None:
            waiting = self._waiting
            waiting.append(hash_)
            if len(waiting) >= PENDING_LEAVES:
                self.settled_nodes()  # memory stays constant


class SegmentAuditor(LedgerAuditor):
    """Verifies one :class:`Segment` from its rows (:meth:`feed_row`, in position order)
    with every check :class:`LedgerAuditor` makes, except what needs the rows before it:
    the chain state its first entry meets, the tree's root and the checkpoints, the prunes
    named elsewhere (the joining auditor decides those)."""

    def __init__(self, segment: Segment, checkpoint_sizes: frozenset[int]) -> None:
        self._segment = segment
        self._sizes = checkpoint_sizes
        self._first_prev = b""
        expected = segment.low + 1
        # Position 1 follows the genesis; any other start is assumed from the first entry.
        placeholder = GENESIS_PREV_HASH if expected == 1 else bytes(HASH_SIZE)
        self._start = ChainState(expected, placeholder, None)
        super().__init__([], verifier=None, origin="")
        self._due = checkpoint_sizes  # this auditor's _check_checkpoint_at notes each one

    def _new_chain(self) -> ChainVerifier:
        return _SegmentChain(self._start, want_leaves=bool(self._sizes))

    # The rows fed so far are the chain's entries: every row fed, good or bad, is one entry
    # taken (:meth:`ChainVerifier.accept`, or :meth:`ChainVerifier.feed` with ``keep_going``),
    # so no count of this auditor's own is kept per row and a page goes through the one
    # pass's loop (:meth:`LedgerAuditor._take_rows`), not a call per row (#12).

    def feed_row(self, row: Sequence[Any]) -> bool:
        if self._chain.entries == 0:
            self._assume_first_link(row)
        return super().feed_row(row)

    def feed_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        if self._chain.entries == 0:
            rows = list(rows)
            if not rows:
                return
            self._assume_first_link(rows[0])
        self._take_rows(rows)

    def _assume_first_link(self, row: Sequence[Any]) -> None:
        """The first entry links, unless it is the ledger's first (genesis) or its
        ``prev_hash`` cannot be a hash; the join checks the assumption."""
        prev = bytes(row[1])
        self._first_prev = prev
        if self._start.expected > 1 and len(prev) == HASH_SIZE:
            self._start = ChainState(self._start.expected, prev, None)
            chain = self._chain
            assert isinstance(chain, _SegmentChain)
            chain.assume_link(prev)

    def _check_checkpoint_at(self, position: int) -> None:
        if position in self._sizes:
            chain = self._chain
            assert isinstance(chain, _SegmentChain)
            chain.events.append((chain.entries - 1, position, ""))
            if chain.leaves is not None:
                chain.trees.append(chain.settled_nodes())

    def result(self) -> SegmentResult:
        chain = self._chain
        assert isinstance(chain, _SegmentChain)
        return SegmentResult(
            segment=self._segment,
            rows=chain.entries,
            start=self._start,
            first_prev_hash=self._first_prev,
            end=chain.state(),
            events=tuple(chain.events),
            trees=None if chain.leaves is None else (*chain.trees, chain.settled_nodes()),
            pruned=tuple(self._pruned),
            covered=tuple(self._covered),
        )
