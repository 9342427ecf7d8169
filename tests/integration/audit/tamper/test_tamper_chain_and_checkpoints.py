"""Entries deleted, reordered, removed at the end, or rewritten with every hash recomputed; a
forged checkpoint: each is found by the chain or the signed checkpoints. (ADR-0006, issue 6
"Tamper"; the shared parts: tamper_support.py, conftest.py)"""

from __future__ import annotations

import json
import random

import asyncpg
import pytest

from branchline_audit.domain.canonical import (
    entry_canonical_bytes,
    format_appended_at,
)
from tests.integration.audit.audit_support import (
    behind_the_ledgers_back,
    rechain,
    superuser,
)
from tests.integration.audit.tamper.tamper_support import (
    SIZE,
    Built,
    event_of,
    row_at,
    tampered,
    verify,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_deleted_entry_is_found_anywhere(fresh_ledger: Built) -> None:
    settings, audit = fresh_ledger
    rng = random.Random(7)
    for position in sorted({1, 500, 501, SIZE, *rng.sample(range(2, SIZE), 6)}):
        row = await row_at(settings, position)
        async with tampered(settings, row):
            await behind_the_ledgers_back(
                settings, "DELETE FROM audit_ledger WHERE position = $1", position
            )
            verdict = await verify(settings, audit)
        assert verdict.first_bad_position == position, verdict.reason
    assert (await verify(settings, audit)).ok


async def test_reordered_entries_are_found(fresh_ledger: Built) -> None:
    settings, audit = fresh_ledger
    rng = random.Random(8)
    for _ in range(5):
        first, second = sorted(rng.sample(range(1, SIZE + 1), 2))
        rows = [await row_at(settings, first), await row_at(settings, second)]
        async with tampered(settings, *rows):
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
            verdict = await verify(settings, audit)
        assert verdict.first_bad_position == first, verdict.reason
    assert (await verify(settings, audit)).ok


async def test_a_rewrite_that_recomputes_every_hash_is_caught_by_the_checkpoints(
    fresh_ledger: Built,
) -> None:
    """The attacker recomputes the chain (and the stored canonical bytes) after a change: the
    chain holds, the signed
    checkpoint does not, and the rewrite is located between two checkpoints."""
    settings, audit = fresh_ledger
    position = 700

    def rewrite(row: asyncpg.Record) -> tuple[bytes, str | None]:
        # Every entry's bytes made again from its event, not only the changed one's.
        event = event_of(row)
        if row["position"] == position:
            event["data"] = {"note": "nothing happened here"}
        canonical = entry_canonical_bytes(
            row["position"], event, format_appended_at(row["appended_at"])
        )
        return canonical, None if row["event"] is None else json.dumps(event)

    await rechain(settings, position, rewrite)
    verdict = await verify(settings, audit)
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
    verdict = await verify(settings, audit)
    assert not verdict.ok
    assert verdict.bad_checkpoint == 500


async def test_entries_removed_at_the_end_are_found_by_the_last_checkpoint(
    fresh_ledger: Built,
) -> None:
    settings, audit = fresh_ledger
    await behind_the_ledgers_back(settings, "DELETE FROM audit_ledger WHERE position > 990")
    verdict = await verify(settings, audit)
    assert verdict.first_bad_position == 991
    assert "removed from the end" in (verdict.reason or "")
