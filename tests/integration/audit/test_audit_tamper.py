"""Tamper detection: any change made behind the ledger's back (a superuser with the trigger
off) is detected and located (ADR-0006, issue 6 "Tamper")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from multiprocessing.context import ForkServerContext
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters import segments as segments_module
from branchline_audit.adapters.segments import ProcessSegmentVerifiers, verifying_context
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.context import AuditContext
from branchline_audit.application.verifying import verify_ledger, verify_ledger_apart
from branchline_audit.domain.canonical import (
    chain_hash,
    encodes_event,
    entry_canonical_bytes,
    format_appended_at,
    stored_event,
)
from branchline_audit.domain.verification import LedgerVerdict, pg_time, stored_entry
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    UNWRITTEN_TIMES,
    append_in_batches,
    audit_context,
    behind_the_ledgers_back,
    quick_settings,
    random_events,
    superuser,
)
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SIZE = 1000
TRIALS = 90


SEGMENTS = 3
"""With the ``segments`` path: 1..333, 334..666, 667.. (a tamper at 333, 334, 666 or 667 is
at a boundary)."""
_PATH = {"path": "one pass"}


@pytest.fixture(autouse=True, params=["one pass", "segments", "apart"])
def verify_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs three times: verified in one pass; in three segments each in a
    process of its own, joined at their boundaries (#12); and as the API verifies, every
    segment in a process, none in the caller's event loop (#12): the verdicts must be the
    same."""
    _PATH["path"] = request.param
    yield request.param
    _PATH["path"] = "one pass"


async def _verify(settings: BranchlineSettings, audit: AuditContext) -> LedgerVerdict:
    if _PATH["path"] == "one pass":
        return await _verify_by(audit, None)
    if _PATH["path"] == "apart":
        return await verify_ledger_apart(
            audit.ledger,
            audit.checkpoints,
            verifier=audit.signer.verifier(),
            origin=audit.origin,
            segments=_segments(settings),
        )
    return await _verify_by(audit, _segments(settings))


def _segments(settings: BranchlineSettings) -> ProcessSegmentVerifiers:
    """Segment verifiers of every entry range, in processes of their own (#12)."""
    return ProcessSegmentVerifiers(
        settings.audit_database_url,
        settings.audit_db_writer_role,
        processes=SEGMENTS,
        min_entries=1,
    )


async def _verify_by(
    audit: AuditContext, segments: ProcessSegmentVerifiers | None
) -> LedgerVerdict:
    return await verify_ledger(
        audit.ledger,
        audit.checkpoints,
        verifier=audit.signer.verifier(),
        origin=audit.origin,
        segments=segments,
    )


async def _build(settings: BranchlineSettings) -> None:
    async with audit_context(settings) as audit:
        events = random_events(SIZE, random.Random(6))
        await append_in_batches(audit.ledger, events[:500], now=T0)
        await checkpoint_now(audit)
        await append_in_batches(audit.ledger, events[500:], now=T0 + timedelta(seconds=1))
        await checkpoint_now(audit)
    # Positions 1..500 as entries appended before migration 006 hold them (the event in its
    # column too); 501..1000 as they are appended now (the event only inside the bytes, #12):
    # every test below meets both.
    await behind_the_ledgers_back(settings, FILL_EVENT_COLUMN + " WHERE position <= 500")


FILL_EVENT_COLUMN = "UPDATE audit_ledger SET event = audit_entry_event(canonical, position)"
EVENT = "coalesce(event, audit_entry_event(canonical, position))"
"""The event as stored: its column, or (since migration 006) inside the canonical bytes."""


def _event_of(row: asyncpg.Record) -> Any:
    if row["event"] is not None:
        return json.loads(row["event"])
    return stored_event(bytes(row["canonical"]), row["position"])


Built = tuple[BranchlineSettings, AuditContext]


PRISTINE = ("audit_ledger", "audit_checkpoints")
"""The tables the shared ledger's tests alter, kept as built (``pristine_<table>``)."""


async def _keep_pristine(settings: BranchlineSettings) -> None:
    async with superuser(settings) as conn:
        for table in PRISTINE:
            await conn.execute(f"CREATE TABLE pristine_{table} AS SELECT * FROM {table}")


async def _restore_pristine(settings: BranchlineSettings) -> None:
    """Put the shared ledger back as built, whatever was done to it, in one transaction."""
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for table in PRISTINE:
            await conn.execute(f"DELETE FROM {table}")
            await conn.execute(f"INSERT INTO {table} SELECT * FROM pristine_{table}")


@pytest.fixture(scope="module")
async def built_1000(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Built]:
    settings = quick_settings(make_settings(infra, tmp_path_factory.mktemp("tamper")))
    await _build(settings)
    await _keep_pristine(settings)
    async with audit_context(settings) as audit:
        yield settings, audit


@pytest.fixture
async def ledger_1000(built_1000: Built) -> AsyncIterator[Built]:
    """The module's shared ledger, put back as built after each test: a test that fails or
    times out mid-tamper, before its own ``finally`` ran (pytest-timeout's signal can land
    outside the test's coroutine, which then never resumes), cannot leave it tampered for the
    next ones."""
    try:
        yield built_1000
    finally:
        await _restore_pristine(built_1000[0])


@pytest.fixture
async def fresh_ledger(settings: BranchlineSettings) -> AsyncIterator[Built]:
    s = quick_settings(settings)
    await _build(s)
    async with audit_context(s) as audit:
        yield s, audit


def _flip_char(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    replacement = "x" if text[i] != "x" else "y"
    return text[:i] + replacement + text[i + 1 :]


def _alter_json_string(event: Any, rng: random.Random) -> Any:
    """Change one character of one string somewhere in the event."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, str) and value:
                paths.append((node, key))
            elif isinstance(value, dict | list):
                walk(value)

    walk(event)
    node, key = rng.choice(paths)
    node[key] = _flip_char(node[key], rng)
    return event


Tamper = Callable[[asyncpg.Record, random.Random], tuple[str, list[Any]]]


def _by_column(column: str) -> Tamper:
    def tamper(row: asyncpg.Record, rng: random.Random) -> tuple[str, list[Any]]:
        value = row[column]
        if column == "event":
            # Where the entry stores its event only in its bytes, a column is added that
            # differs from them.
            new: Any = json.dumps(_alter_json_string(_event_of(row), rng))
            return "UPDATE audit_ledger SET event = $1::jsonb WHERE position = $2", [new]
        if column in ("prev_hash", "hash", "canonical"):
            raw = bytearray(value)
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            new = bytes(raw)
        elif column in ("occurred_at", "appended_at"):
            new = value + timedelta(microseconds=1)
        elif column == "pruned_at":
            new = T0
        elif column == "event_id":
            text = str(value)
            i = rng.choice([i for i, ch in enumerate(text) if ch != "-"])
            new = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1 :]
            return f"UPDATE audit_ledger SET {column} = $1::uuid WHERE position = $2", [new]
        elif column == "position":
            new = value + 10_000_000
        else:
            new = _flip_char(value, rng)
        return f"UPDATE audit_ledger SET {column} = $1 WHERE position = $2", [new]

    return tamper


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
    "pruned_at",
    "canonical",
)


async def _row(settings: BranchlineSettings, position: int) -> asyncpg.Record:
    async with superuser(settings) as conn:
        row = await conn.fetchrow("SELECT * FROM audit_ledger WHERE position = $1", position)
    assert row is not None
    return row


async def _restore(settings: BranchlineSettings, *rows: asyncpg.Record) -> None:
    """Put the rows back exactly, in one transaction: whatever holds their positions (or a
    position moved away, or one of their event ids) is deleted, then they are re-inserted."""
    positions = [r["position"] for r in rows]
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "DELETE FROM audit_ledger WHERE position = ANY($1::bigint[]) "
            "OR position = ANY($2::bigint[]) OR event_id = ANY($3::uuid[])",
            positions,
            [p + 10_000_000 for p in positions],
            [r["event_id"] for r in rows],
        )
        for row in rows:
            columns = list(row.keys())
            placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
            await conn.execute(
                f"INSERT INTO audit_ledger ({', '.join(columns)}) VALUES ({placeholders})",
                *[row[c] for c in columns],
            )


@contextlib.asynccontextmanager
async def _tampered(settings: BranchlineSettings, *rows: asyncpg.Record) -> AsyncIterator[None]:
    """Tampers with ``rows``' entries made inside are undone however the block ends (an error,
    a failed assert, a cancellation or a timeout raised in the test's coroutine), the tamper's
    own statements included: the rows are put back in a ``finally``."""
    try:
        yield
    finally:
        await _restore(settings, *rows)


async def test_a_tamper_is_undone_when_the_test_fails_mid_tamper(ledger_1000: Built) -> None:
    """A check that fails while the ledger is tampered (here: raises) leaves it as it was."""
    settings, audit = ledger_1000
    row = await _row(settings, 17)

    async def fail_mid_tamper() -> None:
        async with _tampered(settings, row):
            await behind_the_ledgers_back(
                settings, "UPDATE audit_ledger SET actor_id = 'x' WHERE position = 17"
            )
            assert not (await _verify(settings, audit)).ok
            raise RuntimeError("a check failed mid-tamper")

    with pytest.raises(RuntimeError, match="mid-tamper"):
        await fail_mid_tamper()
    assert (await _verify(settings, audit)).ok


async def test_a_tamper_is_undone_when_the_test_is_cancelled_mid_tamper(
    ledger_1000: Built,
) -> None:
    """A test cancelled (as a timeout cancels it) while the ledger is tampered, before the
    tamper's statement returned, leaves it as it was."""
    settings, audit = ledger_1000
    row = await _row(settings, 18)
    applied, never = asyncio.Event(), asyncio.Event()

    async def tamper_then_hang() -> None:
        async with _tampered(settings, row):
            async with superuser(settings) as conn, conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute("DELETE FROM audit_ledger WHERE position = 18")
            applied.set()
            await never.wait()

    task = asyncio.ensure_future(tamper_then_hang())
    await applied.wait()
    assert not (await _verify(settings, audit)).ok
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await _verify(settings, audit)).ok


async def test_the_shared_ledger_is_put_back_after_a_test_left_it_tampered(
    ledger_1000: Built,
) -> None:
    """What the teardown of ``ledger_1000`` runs restores what a test could not (its coroutine
    never resumed after a timeout): here, tampers nobody undid."""
    settings, audit = ledger_1000
    await behind_the_ledgers_back(
        settings,
        "UPDATE audit_ledger SET event_type = 'x', position = position + 10000000 "
        "WHERE position = 40",
    )
    await behind_the_ledgers_back(
        settings, "UPDATE audit_checkpoints SET note = note || 'x' WHERE tree_size = 500"
    )
    assert not (await _verify(settings, audit)).ok
    await _restore_pristine(settings)
    assert (await _verify(settings, audit)).ok


async def test_one_altered_byte_in_any_column_is_located(
    ledger_1000: Built,
) -> None:
    settings, audit = ledger_1000
    assert (await _verify(settings, audit)).ok
    rng = random.Random(2026)
    for trial in range(TRIALS):
        column = COLUMNS[trial % len(COLUMNS)]
        position = rng.choice([1, SIZE, rng.randint(1, SIZE)])
        row = await _row(settings, position)
        sql, args = _by_column(column)(row, rng)
        async with _tampered(settings, row):
            await behind_the_ledgers_back(settings, sql, *args, position)
            verdict = await _verify(settings, audit)
        assert not verdict.ok, (column, position)
        assert verdict.first_bad_position == position, (column, position, verdict.reason)
    assert (await _verify(settings, audit)).ok  # every change was undone: the ledger verifies again


@pytest.mark.parametrize(
    "rewrite",
    [
        # 17 -> 17.0: jsonb keeps the scale; Python says 17 == 17.0
        f"jsonb_set({EVENT}, '{{stream_version}}', "
        f"to_jsonb(({EVENT}->>'stream_version')::numeric(20, 1)))",
        f"jsonb_set({EVENT}, '{{schema_version}}', 'true')",  # 1 -> true: Python says 1 == True
    ],
    ids=["int to float", "int to bool"],
)
async def test_a_number_rewritten_as_another_json_type_is_located(
    ledger_1000: Built, rewrite: str
) -> None:
    """The event column rewritten to a value Python compares equal but that is another JSON
    text (the hashed bytes hold ``17`` and ``1``) is found, by the fast path and the full
    check alike."""
    settings, audit = ledger_1000
    for position in (1, 321, SIZE):
        row = await _row(settings, position)
        async with _tampered(settings, row):
            await behind_the_ledgers_back(
                settings,
                f"UPDATE audit_ledger SET event = {rewrite} WHERE position = $1",
                position,
            )
            verdict = await _verify(settings, audit)
        assert not verdict.ok, position
        assert verdict.bad_positions == (position,), verdict.reason
        assert "another JSON type" in (verdict.reason or "")
    assert (await _verify(settings, audit)).ok


async def test_a_deleted_entry_is_found_anywhere(fresh_ledger: Built) -> None:
    settings, audit = fresh_ledger
    rng = random.Random(7)
    for position in sorted({1, 500, 501, SIZE, *rng.sample(range(2, SIZE), 6)}):
        row = await _row(settings, position)
        async with _tampered(settings, row):
            await behind_the_ledgers_back(
                settings, "DELETE FROM audit_ledger WHERE position = $1", position
            )
            verdict = await _verify(settings, audit)
        assert verdict.first_bad_position == position, verdict.reason
    assert (await _verify(settings, audit)).ok


async def test_reordered_entries_are_found(fresh_ledger: Built) -> None:
    settings, audit = fresh_ledger
    rng = random.Random(8)
    for _ in range(5):
        first, second = sorted(rng.sample(range(1, SIZE + 1), 2))
        rows = [await _row(settings, first), await _row(settings, second)]
        async with _tampered(settings, *rows):
            async with superuser(settings) as conn, conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "UPDATE audit_ledger SET position = 99999999 WHERE position = $1", first
                )
                await conn.execute(
                    "UPDATE audit_ledger SET position = $1 WHERE position = $2", first, second
                )
                await conn.execute(
                    "UPDATE audit_ledger SET position = $1 WHERE position = 99999999", second
                )
            verdict = await _verify(settings, audit)
        assert verdict.first_bad_position == first, verdict.reason
    assert (await _verify(settings, audit)).ok


async def test_a_rewrite_that_recomputes_every_hash_is_caught_by_the_checkpoints(
    fresh_ledger: Built,
) -> None:
    """The attacker recomputes the chain (and the stored canonical bytes) after a change: the
    chain holds, the signed
    checkpoint does not, and the rewrite is located between two checkpoints."""
    settings, audit = fresh_ledger
    position = 700
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        rows = await conn.fetch(
            "SELECT position, event, appended_at, prev_hash, canonical FROM audit_ledger "
            "WHERE position >= $1 ORDER BY position",
            position,
        )
        prev = bytes(rows[0]["prev_hash"])
        for row in rows:
            event = _event_of(row)
            if row["position"] == position:
                event["data"] = {"note": "nothing happened here"}
            canonical = entry_canonical_bytes(
                row["position"], event, format_appended_at(row["appended_at"])
            )
            digest = chain_hash(prev, canonical)
            await conn.execute(
                "UPDATE audit_ledger SET event = $1::jsonb, prev_hash = $2, hash = $3, "
                "canonical = $5 WHERE position = $4",
                None if row["event"] is None else json.dumps(event),
                prev,
                digest,
                row["position"],
                canonical,
            )
            prev = digest
    verdict = await _verify(settings, audit)
    assert not verdict.ok
    assert verdict.first_bad_position == 501
    assert verdict.bad_checkpoint == SIZE
    assert "between positions 501 and 1000" in (verdict.reason or "")


async def test_a_forged_checkpoint_is_found(fresh_ledger: Built) -> None:
    settings, audit = fresh_ledger
    await behind_the_ledgers_back(
        settings,
        "UPDATE audit_checkpoints SET note = replace(note, '\n500\n', '\n499\n') "
        "WHERE tree_size = 500",
    )
    verdict = await _verify(settings, audit)
    assert not verdict.ok
    assert verdict.bad_checkpoint == 500


async def test_entries_removed_at_the_end_are_found_by_the_last_checkpoint(
    fresh_ledger: Built,
) -> None:
    settings, audit = fresh_ledger
    await behind_the_ledgers_back(settings, "DELETE FROM audit_ledger WHERE position > 990")
    verdict = await _verify(settings, audit)
    assert verdict.first_bad_position == 991
    assert "removed from the end" in (verdict.reason or "")


async def test_stored_canonical_bytes_are_what_the_chain_hashed(fresh_ledger: Built) -> None:
    """Issue 9: every new entry stores the bytes its hash was computed from."""
    settings, _ = fresh_ledger
    async with superuser(settings) as conn:
        rows = await conn.fetch(
            "SELECT position, event, appended_at, prev_hash, hash, canonical FROM audit_ledger "
            "ORDER BY position"
        )
    assert len(rows) == SIZE
    for row in rows:
        canonical = bytes(row["canonical"])
        assert chain_hash(bytes(row["prev_hash"]), canonical) == bytes(row["hash"])
        assert canonical == entry_canonical_bytes(
            row["position"], _event_of(row), format_appended_at(row["appended_at"])
        )


async def test_rewritten_stored_bytes_are_each_located_and_verify_goes_on(
    fresh_ledger: Built,
) -> None:
    """A rewrite of stored canonical bytes is found wherever it is (one byte changed; the
    bytes of another entry; a byte appended), and verify goes past each bad entry and lists
    every bad position, not only the first."""
    settings, audit = fresh_ledger
    await behind_the_ledgers_back(
        settings,
        "UPDATE audit_ledger SET canonical = overlay(canonical placing '\\x00'::bytea "
        "from 40 for 1) WHERE position = $1",
        30,
    )
    await behind_the_ledgers_back(
        settings,
        "UPDATE audit_ledger SET canonical = (SELECT canonical FROM audit_ledger "
        "WHERE position = 121) WHERE position = $1",
        120,
    )
    await behind_the_ledgers_back(
        settings,
        "UPDATE audit_ledger SET canonical = canonical || ' '::bytea WHERE position = $1",
        900,
    )
    verdict = await _verify(settings, audit)
    assert not verdict.ok
    assert verdict.first_bad_position == 30
    assert verdict.bad_positions == (30, 120, 900), verdict.bad_positions
    assert verdict.bad_count == 3


async def test_a_rewritten_event_is_found_even_when_its_stored_bytes_are_intact(
    fresh_ledger: Built,
) -> None:
    """What the API shows is the event column: a change to it is found by decoding the
    stored bytes (the chain alone, which hashes the bytes, would not see it)."""
    settings, audit = fresh_ledger
    await behind_the_ledgers_back(
        settings,
        f"UPDATE audit_ledger SET event = jsonb_set({EVENT}, '{{data}}', '{{\"note\": \"x\"}}') "
        "WHERE position = ANY($1::bigint[])",
        [333, 777],  # a column altered; a column added beside bytes that hold the event
    )
    verdict = await _verify(settings, audit)
    assert verdict.bad_positions == (333, 777), verdict.reason
    assert "canonical bytes" in (verdict.reason or "")


async def test_entries_written_before_the_bytes_were_stored_verify_as_before(
    fresh_ledger: Built,
) -> None:
    """Backward compatible: rows without stored bytes (written before migration 004) are
    verified from their content, and a change to their content is still found."""
    settings, audit = fresh_ledger
    await behind_the_ledgers_back(
        settings, f"UPDATE audit_ledger SET event = {EVENT}, canonical = NULL WHERE position <= 600"
    )
    assert (await _verify(settings, audit)).ok
    row = await _row(settings, 250)
    sql, args = _by_column("event")(row, random.Random(3))
    await behind_the_ledgers_back(settings, sql, *args, 250)
    verdict = await _verify(settings, audit)
    assert verdict.first_bad_position == 250, verdict.reason
    assert verdict.bad_positions == (250,)


async def test_rows_are_read_in_pages_in_ledger_order_and_match_the_stored_entries(
    ledger_1000: Built,
) -> None:
    """#12: verification reads pages (the next one asked for while one is checked); every
    row once, in order, as the entry reader sees it; a reader that stops early leaves no
    page being read."""
    _, audit = ledger_1000
    stored = [e async for e in audit.ledger.scan_stored()]
    pages = [page async for page in audit.ledger.scan_rows(page_size=300)]
    assert [len(p) for p in pages] == [300, 300, 300, 100]
    rows = [row for page in pages for row in page]
    # The event as jsonb's text, decoded once; none where it is stored only in the bytes.
    assert [type(r[4]) for r in rows] == [str] * 500 + [type(None)] * 500
    assert [stored_entry(r) for r in rows] == stored
    async for _page in audit.ledger.scan_rows(page_size=100):
        break  # the prefetched page is cancelled; the pool is not left short
    assert await audit.ledger.size() == SIZE


async def test_an_append_stores_the_event_once_in_the_bytes_as_hashed(ledger_1000: Built) -> None:
    """#12 (migration 006): an append leaves the event column empty, and the event inside
    the canonical bytes, as SQL reads it (audit_entry_event), is the event as hashed; the
    entries given a column (as appended before 006) hold the same event there."""
    settings, _ = ledger_1000
    async with superuser(settings) as conn:
        rows = await conn.fetch(
            "SELECT position, event, audit_entry_event(canonical, position) AS inside, "
            "appended_at, canonical FROM audit_ledger ORDER BY position"
        )
    assert [r["event"] is None for r in rows] == [False] * 500 + [True] * 500
    for row in rows:
        event = json.loads(row["inside"])
        at = format_appended_at(row["appended_at"])
        assert encodes_event(bytes(row["canonical"]), row["position"], at, event)
        if row["event"] is not None:
            assert json.loads(row["event"]) == event


@pytest.mark.parametrize("position", [333, 334, 666, 667])
async def test_a_change_at_a_segment_boundary_is_located_as_in_one_pass(
    ledger_1000: Built, position: int
) -> None:
    """#12: any column of the first or last entry of a segment changed: verified in segments,
    the verdict is the one-pass verdict, whole (the segment that does not join is verified
    again from where the ones before it left the chain)."""
    settings, audit = ledger_1000
    rng = random.Random(position)
    segments = _segments(settings)
    for column in COLUMNS:
        row = await _row(settings, position)
        sql, args = _by_column(column)(row, rng)
        async with _tampered(settings, row):
            await behind_the_ledgers_back(settings, sql, *args, position)
            in_segments = await _verify_by(audit, segments)
            one_pass = await _verify_by(audit, None)
        assert in_segments == one_pass, column
        assert one_pass.first_bad_position == position, (column, one_pass.reason)
    for change in (
        "DELETE FROM audit_ledger WHERE position = $1",
        "UPDATE audit_ledger SET prev_hash = decode(repeat('ab', 32), 'hex') WHERE position = $1",
    ):
        row = await _row(settings, position)
        async with _tampered(settings, row):
            await behind_the_ledgers_back(settings, change, position)
            in_segments = await _verify_by(audit, segments)
            one_pass = await _verify_by(audit, None)
        assert in_segments == one_pass, change
        assert one_pass.first_bad_position == position, (change, one_pass.reason)
    assert (await _verify_by(audit, segments)).ok


TIMES = (
    "2000-01-01 00:00:00+00",
    "1999-12-31 23:59:59.999999+00",
    "2024-05-01 09:00:00.25+02",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "infinity",
    "-infinity",
    "10000-01-01 00:00:00+00",
    "0001-12-31 23:59:59+00 BC",
    "4713-01-01 00:00:00+00 BC",
)


def _decoded_or_refused(decode: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", decode()
    except OverflowError:
        return "refused", None


@pytest.mark.parametrize("text", TIMES)
async def test_the_scans_binary_times_are_the_times_asyncpg_reads(
    ledger_1000: Built, text: str
) -> None:
    """#12: the verifier's scan reads ``appended_at`` and ``occurred_at`` as
    ``timestamptz_send``'s bytes; turned into times (for the full checks and the append
    time's head) they are exactly what asyncpg makes of the column, infinities and times
    past Python's years included (refused alike)."""
    settings, _ = ledger_1000
    async with superuser(settings) as conn:
        column = await conn.fetchval("SELECT timestamptz_send($1::text::timestamptz)", text)
        try:
            expected: tuple[str, Any] = (
                "value",
                await conn.fetchval("SELECT $1::text::timestamptz", text),
            )
        except OverflowError:
            expected = ("refused", None)
    assert type(column) is bytes
    got = _decoded_or_refused(lambda: pg_time(column))
    assert got == expected, text
    if got[0] == "value":
        assert type(got[1]) is type(expected[1])
        assert got[1].tzinfo == expected[1].tzinfo


@pytest.mark.parametrize("column", ["appended_at", "occurred_at", "pruned_at"])
@pytest.mark.parametrize("position", [250, 750])
async def test_a_time_no_append_writes_is_located_not_raised(
    ledger_1000: Built, column: str, position: int
) -> None:
    """A time column set behind the ledger's back to a time no append writes (an infinity,
    a year past 9999 or before the era) is a bad entry at its position, in one pass and in
    segments alike; verify reports it instead of failing with the time's error (#12)."""
    settings, audit = ledger_1000
    segments = _segments(settings)
    for text in UNWRITTEN_TIMES:
        row = await _row(settings, position)
        async with _tampered(settings, row):
            await behind_the_ledgers_back(
                settings,
                f"UPDATE audit_ledger SET {column} = $1::text::timestamptz WHERE position = $2",
                text,
                position,
            )
            one_pass = await _verify_by(audit, None)
            in_segments = await _verify_by(audit, segments)
        assert not one_pass.ok, text
        assert one_pass.first_bad_position == position, (text, one_pass.reason)
        assert in_segments == one_pass, text
    assert (await _verify_by(audit, None)).ok


async def test_segments_in_the_standard_fork_server_verify_alike(
    ledger_1000: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Python other than the one whose fork-server launch the segments restate (a private
    part of ``multiprocessing``), they run in the standard fork server's processes and come to
    the one-pass verdict all the same (#12)."""
    monkeypatch.setattr(segments_module, "_LAUNCH_RESTATED_FROM", (0, 0))
    assert type(verifying_context()) is ForkServerContext
    settings, audit = ledger_1000
    segments = _segments(settings)
    row = await _row(settings, 334)
    async with _tampered(settings, row):
        await behind_the_ledgers_back(settings, "DELETE FROM audit_ledger WHERE position = $1", 334)
        in_segments = await _verify_by(audit, segments)
        one_pass = await _verify_by(audit, None)
    assert one_pass.first_bad_position == 334, one_pass.reason
    assert in_segments == one_pass
    assert (await _verify_by(audit, segments)).ok
