"""The append's own binary COPY rows (#12, ``adapters/ledger_copy.py``): each field as asyncpg's
codec writes it. The stored rows are compared with asyncpg's in
``tests/integration/audit/test_audit_append_copy.py``; here the encoder's paths against each
other and against the format's definition."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from asyncpg.pgproto.pgproto import UUID as PgUUID
from hypothesis import given
from hypothesis import strategies as st

from branchline_audit.adapters.ledger_copy import COLUMNS, row_encoder, text, timestamptz

_ZERO_NAMED = timezone(timedelta(0), "UTC+0")  # zero offset, not the UTC singleton
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _reference(moment: datetime) -> int:
    """asyncpg's timestamptz_encode, written as it is: astimezone, the delta's parts, its
    microsecond counts of 9999-12-31T23:59:59.999999 and 0001-01-01 UTC as infinities."""
    delta = moment.astimezone(UTC) - _EPOCH
    ts = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return {252455615999999999: 2**63 - 1, -63082281600000000: -(2**63)}.get(ts, ts)


_offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), _offsets)
def test_a_time_is_asyncpgs_whatever_its_zone(naive: datetime, zone: timezone) -> None:
    moment = naive.replace(tzinfo=zone)
    expected = struct.pack(">iq", 8, _reference(moment))
    assert timestamptz(moment) == expected
    in_utc = moment.astimezone(UTC)
    assert timestamptz(in_utc) == expected  # the UTC fast path
    assert timestamptz(in_utc.replace(tzinfo=_ZERO_NAMED)) == expected  # the general path


@pytest.mark.parametrize(
    ("moment", "value"),
    [
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**63 - 1),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=_ZERO_NAMED), 2**63 - 1),
        (datetime(1, 1, 1, tzinfo=UTC), -(2**63)),
        (datetime(2000, 1, 1, tzinfo=UTC), 0),
        (datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 1),
        (datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1),
        (datetime(9999, 12, 31, 23, 59, 59, 999999), 2**63 - 1),
    ],
)
def test_the_instants_asyncpg_writes_as_infinities_and_the_epoch(
    moment: datetime, value: int
) -> None:
    assert timestamptz(moment) == struct.pack(">iq", 8, value)


def test_a_time_asyncpg_refuses_is_refused() -> None:
    with pytest.raises(OverflowError):
        timestamptz(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    with pytest.raises(TypeError):
        timestamptz("2026-11-22T09:00:00Z")  # type: ignore[arg-type]


class _Shouting(str):
    __slots__ = ()

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return b"NOT THIS"


@given(st.text())
def test_a_text_is_its_utf8_with_its_length(value: str) -> None:
    try:
        data = value.encode()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            text(value)
        return
    assert text(value) == struct.pack(">i", len(data)) + data
    assert text(_Shouting(value)) == text(value)  # the str's own bytes, as asyncpg's


def test_null_and_not_a_text() -> None:
    assert text(None) == b"\xff\xff\xff\xff"
    with pytest.raises(TypeError):
        text(17)  # type: ignore[arg-type]


def _fields(tuple_bytes: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from(">h", tuple_bytes)
    at, fields = 2, []
    for _ in range(count):
        (size,) = struct.unpack_from(">i", tuple_bytes, at)
        at += 4
        if size == -1:
            fields.append(None)
        else:
            fields.append(tuple_bytes[at : at + size])
            at += size
    assert at == len(tuple_bytes)
    return fields


@given(
    position=st.integers(1, 2**53 - 1),
    texts=st.lists(st.none() | st.text(st.characters(blacklist_categories=["Cs"])), min_size=4),
    occurred=st.none() | st.datetimes(timezones=st.just(UTC)),
    canonical=st.binary(),
    pg_uuid=st.booleans(),
)
def test_a_row_is_its_fields_in_order(
    position: int,
    texts: list[str | None],
    occurred: datetime | None,
    canonical: bytes,
    pg_uuid: bool,
) -> None:
    event_id = uuid.uuid4()
    now = datetime(2026, 11, 22, 9, 0, 0, 1, tzinfo=UTC)
    event_type = texts[0] or "t"
    index = (
        PgUUID(str(event_id)) if pg_uuid else event_id,
        event_type,
        texts[1],
        texts[2],
        texts[3],
        occurred,
    )
    encode = row_encoder(now)
    prev, digest = bytes(range(32)), bytes(range(32, 64))
    for _ in range(2):  # the second time from the table of texts seen
        fields = _fields(encode(position, index, prev, digest, canonical))
        assert len(fields) == len(COLUMNS) == 12
        assert fields == [
            struct.pack(">q", position),
            event_id.bytes,
            None,
            event_type.encode(),
            *(None if t is None else t.encode() for t in texts[1:4]),
            None if occurred is None else timestamptz(occurred)[4:],
            timestamptz(now)[4:],
            prev,
            digest,
            canonical,
        ]
