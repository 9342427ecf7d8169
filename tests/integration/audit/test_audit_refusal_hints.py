"""A process's first refused checkpointer round (D-11: the ledger contradicts its latest signed
checkpoint) reads where a refusal located the rewrite before (``audit_refusal_hints``,
migration 010) and proves that spot instead of halving every checkpoint below; a hint is a
cache, never evidence: a wrong, stale, forged or removed one costs only the halving, never a
wrong verdict or place (#12, Round 36; ``signed_leaves._last_holding_below``)."""

from __future__ import annotations

import asyncpg
import pytest

from branchline_audit.domain.verification import RefusalHint
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    behind_the_ledgers_back,
    quick_settings,
    superuser,
)
from tests.integration.audit.refused_support import (
    REWRITTEN,
    SIGNED,
    counted_contexts,
    refused,
    signed_and_rewritten,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LOCATED = REWRITTEN - 1
"""The last signed checkpoint that holds: the refusal's ``rewritten_after``."""
HINTED_ROUND = 8
"""A fresh process's first refused round with a sound hint: the round's two reads, the
refused leaf with its path (2), the hint (1), the pair's checkpoints (1), the held leaf with
its path (2). Halving 63 checkpoints took 23 (the round's 2, the refused leaf's 2, the sizes,
6 probes of 3)."""


async def _hints(settings: BranchlineSettings) -> list[tuple[int, int | None, int]]:
    async with superuser(settings) as conn:
        rows = await conn.fetch(
            "SELECT refused_size, held_size, failing_size FROM audit_refusal_hints ORDER BY hint_id"
        )
    return [(r["refused_size"], r["held_size"], r["failing_size"]) for r in rows]


async def _forge(settings: BranchlineSettings, held: int | None, failing: int) -> None:
    await behind_the_ledgers_back(
        settings,
        "INSERT INTO audit_refusal_hints (refused_size, held_size, failing_size, recorded_at) "
        "VALUES ($1, $2, $3, $4)",
        SIGNED,
        held,
        failing,
        T0,
    )


async def test_a_fresh_process_first_refused_round_proves_the_stored_hint(
    settings: BranchlineSettings,
) -> None:
    """The first process halves and stores where it located the rewrite; a fresh process's
    first refused round reads that hint and proves its pair: 8 statements where halving took
    23 (the old code halves: fails on it), the same verdict and place, no new hint stored."""
    async with counted_contexts(settings) as (fresh, logged):
        first_process = fresh()
        await signed_and_rewritten(first_process, settings)
        located = await refused(first_process)
        assert located.rewritten_after == LOCATED

        second_process = fresh()
        logged.clear()
        hinted = await refused(second_process)
        statements = [" ".join(str(q.query).split())[:70] for q in logged]
        assert (hinted.detail, hinted.rewritten_after) == (located.detail, LOCATED)
        assert len(statements) == HINTED_ROUND, statements
        assert SIGNED not in second_process.signed_leaves  # the refused leaf still fails
        assert await _hints(settings) == [(SIGNED, LOCATED, REWRITTEN)]


@pytest.mark.parametrize(
    ("held", "failing"),
    [
        (50, 51),  # the wrong place: both rewritten
        (10, 11),  # a range that is fine: both hold
        (None, 1),  # none holds: the first one does
        (10, REWRITTEN),  # holds and fails, but checkpoints lie between
        (REWRITTEN, LOCATED),  # out of order
        (LOCATED, SIGNED + 5),  # above the refused checkpoint
    ],
)
async def test_a_forged_hint_costs_only_the_halving(
    settings: BranchlineSettings, held: int | None, failing: int
) -> None:
    """A hint written behind the ledger's back that does not hold: the fresh process's first
    round still names the right checkpoint and place (it halves), and stores the place it
    found, which the next fresh process proves in the hinted round's statements."""
    async with counted_contexts(settings) as (fresh, logged):
        await signed_and_rewritten(fresh(), settings)
        await _forge(settings, held, failing)
        forged = await refused(fresh())
        assert forged.position == SIGNED
        assert forged.rewritten_after == LOCATED, forged.detail
        assert f"between positions {REWRITTEN} and {SIGNED}" in forged.detail
        assert (await _hints(settings))[-1] == (SIGNED, LOCATED, REWRITTEN)

        logged.clear()
        assert (await refused(fresh())).detail == forged.detail
        assert len(logged) == HINTED_ROUND


async def test_a_removed_hint_falls_back_to_halving(settings: BranchlineSettings) -> None:
    """The hints deleted behind the ledger's back (the table emptied): a fresh process halves
    as before (more statements than a hinted round), names the same place and stores it."""
    async with counted_contexts(settings) as (fresh, logged):
        first_process = fresh()
        await signed_and_rewritten(first_process, settings)
        located = await refused(first_process)
        await behind_the_ledgers_back(settings, "DELETE FROM audit_refusal_hints")
        assert await _hints(settings) == []

        logged.clear()
        halved = await refused(fresh())
        assert (halved.detail, halved.rewritten_after) == (located.detail, LOCATED)
        assert len(logged) > HINTED_ROUND
        assert await _hints(settings) == [(SIGNED, LOCATED, REWRITTEN)]


async def test_a_stale_hint_after_a_second_rewrite_is_halved_past(
    settings: BranchlineSettings,
) -> None:
    """A second rewrite further down after the hint was stored: the stored pair's lower
    checkpoint no longer holds, so a fresh process halves and names the new place."""
    async with counted_contexts(settings) as (fresh, _):
        await signed_and_rewritten(fresh(), settings)
        await refused(fresh())
        await behind_the_ledgers_back(
            settings, "UPDATE audit_ledger SET hash = sha256(hash) WHERE position >= 20"
        )
        moved = await refused(fresh())
        assert moved.rewritten_after == 19, moved.detail
        assert (await _hints(settings))[-1] == (SIGNED, 19, 20)


async def test_a_role_refused_the_hints_still_locates_the_rewrite(
    settings: BranchlineSettings,
) -> None:
    """An operator's grants without the hints' table (the writer may neither read nor
    store one): a refusal still names the right place, by halving, and is no other error."""
    async with counted_contexts(settings) as (fresh, _):
        await signed_and_rewritten(fresh(), settings)
        s = quick_settings(settings)
        async with superuser(s) as conn:
            await conn.execute(f"REVOKE ALL ON audit_refusal_hints FROM {s.audit_db_writer_role}")
        for _ in range(2):
            refusal = await refused(fresh())
            assert refusal.rewritten_after == LOCATED, refusal.detail
        assert await _hints(s) == []


async def _as_role(settings: BranchlineSettings, role: str, sql: str) -> None:
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        await conn.execute(sql)


async def test_the_hints_are_insert_only(settings: BranchlineSettings) -> None:
    """Like every audit table: the writer may not change or remove a hint, nor the owner."""
    async with counted_contexts(settings) as (fresh, _):
        await signed_and_rewritten(fresh(), settings)
        await refused(fresh())
    s = quick_settings(settings)
    for role, refusal in (
        (s.audit_db_writer_role, "permission denied"),
        (s.audit_db_owner_role, "insert-only"),
    ):
        for change in (
            "UPDATE audit_refusal_hints SET held_size = 1",
            "DELETE FROM audit_refusal_hints",
            "TRUNCATE audit_refusal_hints",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
                await _as_role(s, role, change)
    assert await _hints(s) == [(SIGNED, LOCATED, REWRITTEN)]


KEPT = 16
"""The hints kept at most (migration 011): the new one and the 15 before it."""


async def test_the_hints_are_bounded_and_every_read_answers_as_before(
    settings: BranchlineSettings,
) -> None:
    """Each stored hint deletes those it supersedes (an older one whose failing checkpoint is
    at or above its own: the reader, taking the latest that fits, never reads it again), then
    all but the 16 latest left: 60 hints stored as the writer leave at most 16 rows (the old
    code kept all 60: fails on it), those the two rules say; and at every step each refused
    size reads the hint the whole table would give, or none (where the cap dropped it)."""
    pairs = [((n * 37) % 61 + 1, (n * 37) % 61 + 2) for n in range(40)] + [
        (n, n + 1) for n in range(20, 40)
    ]
    stored: list[tuple[int, int]] = []
    kept: list[tuple[int, int]] = []
    async with counted_contexts(settings) as (fresh, _):
        checkpoints = fresh().checkpoints
        for held, failing in pairs:
            await checkpoints.record_refusal_hint(
                SIGNED, RefusalHint(held=held, failing=failing), now=T0
            )
            stored.append((held, failing))
            kept = [*[p for p in kept if p[1] < failing][-(KEPT - 1) :], (held, failing)]
            assert [(h, f) for _, h, f in await _hints(settings)] == kept
            for size in range(1, SIGNED + 4):
                whole = [p for p in stored if p[1] <= size][-1:]
                read = await checkpoints.refusal_hint(size)
                answer = [] if read is None else [(read.held, read.failing)]
                assert answer == [p for p in kept if p[1] <= size][-1:], size
                assert answer in ([], whole), size
        # one below every kept one supersedes them all
        await checkpoints.record_refusal_hint(SIGNED, RefusalHint(held=None, failing=1), now=T0)
    assert await _hints(settings) == [(SIGNED, None, 1)]
