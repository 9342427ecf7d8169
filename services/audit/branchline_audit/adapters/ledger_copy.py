"""An append's ledger rows in PostgreSQL's binary COPY format, made by the append itself (#12).

``asyncpg``'s ``copy_records_to_table`` encodes rows into one buffer and sends it only when it
holds 512 KB or the rows end: a 500-entry append (≈ 450 KB) reached PostgreSQL in one piece
after all of its Python had run, so the two ran one after the other. The append now hands
``copy_to_table`` a stream of these rows in chunks (:data:`CHUNK_ROWS`), each sent as soon as
it is made, and PostgreSQL inserts a chunk while Python builds the next.

The bytes are asyncpg's, field for field, so the stored rows are the same (the integration
test ``test_audit_append_copy.py`` compares rows written both ways): ``int8`` big-endian,
``uuid`` its 16 bytes, ``text`` its UTF-8 (strict, as asyncpg's ``PyUnicode_AsUTF8AndSize``),
``bytea`` as is, ``timestamptz`` as asyncpg's ``timestamptz_encode`` computes it (the instant
in UTC as microseconds since 2000-01-01, and asyncpg's own mapping of 9999-12-31T23:59:59.999999
and 0001-01-01T00:00:00 UTC to PostgreSQL's infinities), NULL as length -1.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from branchline_audit.domain.records import IndexRow

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
"""The binary COPY signature, no flags, no header extension."""
COPY_TRAILER = struct.pack(">h", -1)
CHUNK_ROWS = 64
"""Rows per chunk sent: about 50 to 80 KB, about what PostgreSQL's COPY buffers before it inserts
(64 KB of tuples), so each chunk is inserted while the next is built."""

COLUMNS = (
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
"""The columns of a row, in the order :func:`row_encoder` writes them."""

_NULL = struct.pack(">i", -1)
# Field count, position (int8), event_id (uuid), the event column NULL (the event is stored
# once, in the canonical bytes: migration 006).
_FIXED = struct.Struct(">hiqi16si")
# prev_hash and hash (32 bytes each: chain_hash refuses any other prev_hash, SHA-256 makes
# the other), then the canonical bytes' length.
_HASHES = struct.Struct(">i32si32si")
_LENGTH = struct.Struct(">i")
_TIME = struct.Struct(">iq")

# asyncpg's (pgproto/codecs/datetime.pyx): its epoch, the naive extremes it compares with
# (an aware time never equals them), and the microsecond counts it writes as infinities.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INFINITY = datetime(9999, 12, 31, 23, 59, 59, 999999)  # noqa: DTZ001 - asyncpg's naive value
_NEGATIVE_INFINITY = datetime(1, 1, 1)  # noqa: DTZ001 - asyncpg's naive value
_INFINITY_TS = 252455615999999999
_NEGATIVE_INFINITY_TS = -63082281600000000
_PG_INFINITY = 0x7FFFFFFFFFFFFFFF
_PG_NEGATIVE_INFINITY = -0x8000000000000000


def timestamptz(moment: datetime) -> bytes:
    """``moment`` as asyncpg's binary ``timestamptz`` codec writes it (length and value)."""
    if type(moment) is datetime and moment.tzinfo is UTC:
        # An aware time is never asyncpg's naive extremes, and astimezone(UTC) is the time
        # itself: its microseconds since the epoch, as asyncpg's sum of the delta's parts.
        ts = (moment - _PG_EPOCH) // _MICROSECOND
    else:
        if not isinstance(moment, datetime):
            raise TypeError(f"expected a datetime.datetime instance, got {type(moment).__name__!r}")
        if moment == _INFINITY:
            return _TIME.pack(8, _PG_INFINITY)
        if moment == _NEGATIVE_INFINITY:
            return _TIME.pack(8, _PG_NEGATIVE_INFINITY)
        delta = moment.astimezone(UTC) - _PG_EPOCH
        ts = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if ts == _INFINITY_TS:
        ts = _PG_INFINITY
    elif ts == _NEGATIVE_INFINITY_TS:
        ts = _PG_NEGATIVE_INFINITY
    return _TIME.pack(8, ts)


def text(value: str | None) -> bytes:
    """A ``text`` field (or NULL) as asyncpg writes it."""
    if value is None:
        return _NULL
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    data = str.encode(value)  # the str's own UTF-8, strict, whatever a subclass overrides
    return _LENGTH.pack(len(data)) + data


def row_encoder(appended_at: datetime) -> Callable[[int, IndexRow, bytes, bytes, bytes], bytes]:
    """The rows of one append (one append time): ``encode(position, index, prev_hash, hash,
    canonical)`` is the binary COPY tuple of :data:`COLUMNS`. The append time is encoded
    once; a text seen before in this append (types, clients, actors, branches repeat) is
    taken from a table of its encodings."""
    appended = timestamptz(appended_at)
    texts: dict[str | None, bytes] = {None: _NULL}
    known = texts.get

    def field(value: str | None) -> bytes:
        encoded = text(value)
        if type(value) is str:
            texts[value] = encoded
        return encoded

    def encode(
        position: int, index: IndexRow, prev_hash: bytes, hash_: bytes, canonical: bytes
    ) -> bytes:
        event_id, event_type, client_id, actor_id, branch_id, occurred_at = index
        # A text seen before is taken from the table only when it is exactly a str (a
        # subclass could compare equal to another text).
        return b"".join(
            (
                # index_row's ids are asyncpg's UUID or uuid.UUID: 16 bytes.
                _FIXED.pack(12, 8, position, 16, event_id.bytes, -1),
                (type(event_type) is str and known(event_type)) or field(event_type),
                (type(client_id) is str and known(client_id)) or field(client_id),
                (type(actor_id) is str and known(actor_id)) or field(actor_id),
                (type(branch_id) is str and known(branch_id)) or field(branch_id),
                _NULL if occurred_at is None else timestamptz(occurred_at),
                appended,
                _HASHES.pack(32, prev_hash, 32, hash_, len(canonical)),
                canonical,
            )
        )

    return encode
