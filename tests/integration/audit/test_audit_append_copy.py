"""The append's rows streamed into its COPY in chunks it encodes itself (#12,
``adapters/ledger_copy.py``) are the rows asyncpg's ``copy_records_to_table`` stored before, to
the byte: every column of every row is compared with a table filled the old way (the old
append's row code, below, and asyncpg's encoding), across chunk boundaries, odd texts and
times (offsets, the instants asyncpg writes as infinities); a refused event, early or late
in a chunk, still leaves nothing, and the connection appends next."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.ledger import UnstorableEvent, _event_uuid
from branchline_audit.adapters.ledger_copy import CHUNK_ROWS, COLUMNS
from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    CanonicalisationError,
    chain_hash,
    entry_encoder,
    format_appended_at,
)
from branchline_audit.domain.records import index_row
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    audit_context,
    event,
    quick_settings,
    random_events,
    superuser,
)

_READ = (
    "SELECT position, event_id, event, event_type, client_id, actor_id, branch_id, "
    "timestamptz_send(occurred_at), timestamptz_send(appended_at), prev_hash, hash, canonical "
    "FROM {table} ORDER BY position"
)


def _odd_events(rng: random.Random) -> list[dict[str, Any]]:
    """Events whose columns take every path of the row encoder."""
    odd: list[dict[str, Any]] = []
    times = [
        "2026-11-22T09:00:00Z",
        "2026-11-22T09:00:00.000001Z",
        "2026-11-22T14:30:00.5+05:30",
        "2026-11-22T01:00:00-08:00",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:00:00Z",
        "1970-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00Z",  # asyncpg writes it as -infinity
        "0001-01-01T00:00:00.000001Z",
        "9999-12-31T23:59:59.999999Z",  # asyncpg writes it as infinity
        "9999-12-31T23:59:59.999998Z",
        "9999-12-31T22:59:59.999999-01:00",
        "2026-11-22T09:00:00+23:59",
    ]
    for i, moment in enumerate(times):
        odd.append({**event(1000 + i), "occurred_at": moment, "recorded_at": moment})
    texts = ["", "é", "客户-7", "😀 emoji", "tab\there", "back\\slash", "quote'\"", "x" * 3000]
    for i, value in enumerate(texts):
        odd.append(
            event(
                2000 + i,
                event_type=value or "t",
                client_id=value,
                branch_id=texts[(i + 1) % len(texts)],
                actor_id=texts[(i + 2) % len(texts)],
            )
        )
    # Columns that are not strings (NULL), no actor, no occurred_at, other id forms.
    odd.append({**event(3000), "client_id": 17, "branch_id": None, "actor": "someone"})
    bare = event(3001)
    del bare["occurred_at"], bare["actor"], bare["client_id"], bare["branch_id"]
    odd.append(bare)
    odd.append({**event(3002), "event_id": str(uuid.uuid4()).upper()})
    odd.append({**event(3003), "event_id": "{" + str(uuid.uuid4()) + "}"})
    odd.append({**event(3004), "event_id": "urn:uuid:" + str(uuid.uuid4())})
    odd.append({**event(3005), "event_id": uuid.uuid4().hex})
    odd.append({**event(3006), "data": {"amount": 1.5, "deep": [[[{"a": None}]]]}})
    rng.shuffle(odd)
    return odd


def _old_rows(
    events: list[dict[str, Any]], now: datetime, sizes: list[int]
) -> list[tuple[Any, ...]]:
    """The rows the append built before (its loop as it was, asyncpg's types), appended in
    batches of ``sizes``, with the duplicates each batch skipped."""
    rows: list[tuple[Any, ...]] = []
    stored: set[uuid.UUID] = set()
    position, prev = 0, GENESIS_PREV_HASH
    start = 0
    for size in sizes:
        batch = events[start : start + size]
        start += size
        encode = entry_encoder(format_appended_at(now))
        for e in batch:
            index = index_row(e, _event_uuid)
            if index[0] in stored:
                continue
            stored.add(index[0])
            position += 1
            canonical = encode(position, e)
            digest = chain_hash(prev, canonical)
            rows.append((position, index[0], None, *index[1:], now, prev, digest, canonical))
            prev = digest
    return rows


@pytest.mark.parametrize("now_offset", [UTC, timezone(timedelta(hours=-3, minutes=-30))])
async def test_streamed_rows_equal_the_old_copy_to_the_byte(
    settings: BranchlineSettings, now_offset: timezone
) -> None:
    rng = random.Random(17)
    events = random_events(600, rng) + _odd_events(rng)
    rng.shuffle(events)
    events += events[:7]  # duplicates: within the stream and of stored entries
    now = datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC).astimezone(now_offset)
    # Across and exactly at chunk boundaries, and 500 (the consumer's batch).
    sizes = [1, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1, 2 * CHUNK_ROWS, 500]
    sizes.append(len(events) - sum(sizes))
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        start = 0
        for size in sizes:
            await audit.ledger.append(events[start : start + size], now=now)
            start += size
        async with superuser(s) as conn:
            await conn.execute(
                "CREATE TABLE old_rows (LIKE audit_ledger INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            await conn.copy_records_to_table(
                "old_rows", records=_old_rows(events, now, sizes), columns=COLUMNS
            )
            new = await conn.fetch(_READ.format(table="audit_ledger"))
            old = await conn.fetch(_READ.format(table="old_rows"))
            infinities = await conn.fetchval(
                "SELECT count(*) FROM audit_ledger WHERE occurred_at IN ('infinity', '-infinity')"
            )
    assert len(new) == len(events) - 7
    assert [tuple(r) for r in new] == [tuple(r) for r in old]
    # asyncpg's mapping kept: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z (twice,
    # once at an offset) are stored as PostgreSQL's infinities, as before.
    assert infinities == 3


@pytest.mark.parametrize(
    ("refusal", "at"),
    [
        ("nul", 0),
        ("nul", CHUNK_ROWS - 1),
        ("nul", CHUNK_ROWS),
        ("nul", 499),
        ("not canonical", CHUNK_ROWS + 5),
        ("time out of range", 2 * CHUNK_ROWS + 1),
    ],
)
async def test_a_refused_event_anywhere_in_the_stream_leaves_nothing(
    settings: BranchlineSettings, at: int, refusal: str
) -> None:
    rng = random.Random(at)
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        await audit.ledger.append(random_events(5, rng), now=T0)
        batch = random_events(500, rng, start=5)
        bad: dict[str, Any]
        expected: type[Exception]
        if refusal == "nul":
            bad, expected = {**batch[at], "data": {"note": "a\x00b"}}, UnstorableEvent
        elif refusal == "not canonical":
            bad, expected = {**batch[at], "data": {"x": float("nan")}}, CanonicalisationError
        else:  # UTC would be year 0: asyncpg's codec refused it, so does the row encoder
            moment = "0001-01-01T00:00:00+01:00"
            bad, expected = {**batch[at], "occurred_at": moment}, OverflowError
        batch[at] = bad
        with pytest.raises(expected):
            await audit.ledger.append(batch, now=T0)
        async with superuser(s) as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_ledger") == 5
            assert await conn.fetchval("SELECT count(*) FROM audit_merkle_nodes") == 0
        # Every connection of the pool appends next, the chain unbroken.
        for i in range(4):
            more = random_events(10, rng, start=600 + 10 * i)
            assert await audit.ledger.append(more, now=T0) == 10
        del batch[at]
        assert await audit.ledger.append(batch, now=T0) == 499
        async with superuser(s) as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_ledger") == 544
        verdict = await _verify(audit)
        assert verdict.ok, verdict
        assert verdict.entries == 544


async def _verify(audit: Any) -> Any:
    from branchline_audit.application.verifying import verify_ledger

    return await verify_ledger(
        audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
    )


async def test_a_database_refusal_before_a_python_one_reports_the_python_one(
    settings: BranchlineSettings,
) -> None:
    """When PostgreSQL refuses a row already sent (here: a row it cannot hold) and a later
    event is refused by the append, the append raises the append's refusal, as it did when
    it refused before sending any row; nothing is kept."""
    s = quick_settings(settings)
    rng = random.Random(3)
    async with audit_context(s) as audit:
        batch = random_events(200, rng)
        batch[150] = {**batch[150], "data": {"note": "a\x00b"}}
        async with superuser(s) as conn:
            await conn.execute(
                "ALTER TABLE audit_ledger ADD CONSTRAINT no_c3 CHECK (client_id <> 'C-3') NOT VALID"
            )
        try:
            with pytest.raises(UnstorableEvent):
                await audit.ledger.append(batch, now=T0)
            with pytest.raises(asyncpg.CheckViolationError):
                await audit.ledger.append(batch[:150], now=T0)
        finally:
            async with superuser(s) as conn:
                await conn.execute("ALTER TABLE audit_ledger DROP CONSTRAINT no_c3")
        async with superuser(s) as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_ledger") == 0
        assert await audit.ledger.append(batch[:150], now=T0) == 150
