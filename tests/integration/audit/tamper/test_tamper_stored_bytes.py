"""The stored canonical bytes: what the chain hashed, rewrites of them located, the event column
checked against them, rows without them, the pages verify reads. (ADR-0006, issue 6 "Tamper";
the shared parts: tamper_support.py, conftest.py)"""

from __future__ import annotations

import json
import random

import pytest

from branchline_audit.domain.canonical import (
    chain_hash,
    encodes_event,
    entry_canonical_bytes,
    format_appended_at,
)
from branchline_audit.domain.verification import stored_entry
from tests.integration.audit.audit_support import (
    behind_the_ledgers_back,
    superuser,
)
from tests.integration.audit.tamper.tamper_support import (
    EVENT,
    SIZE,
    Built,
    by_column,
    event_of,
    row_at,
    verify,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


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
            row["position"], event_of(row), format_appended_at(row["appended_at"])
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
    verdict = await verify(settings, audit)
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
    verdict = await verify(settings, audit)
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
    assert (await verify(settings, audit)).ok
    row = await row_at(settings, 250)
    sql, args = by_column("event")(row, random.Random(3))
    await behind_the_ledgers_back(settings, sql, *args, 250)
    verdict = await verify(settings, audit)
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
