"""A refused checkpointer round (D-11: the ledger contradicts its latest signed checkpoint)
costs the same number of statements whatever the number of checkpoints, and still follows
every change a DBA makes between rounds: a second rewrite, a checkpoint removed, the rewrite
undone (#12, Round 34; ``signed_leaves._last_holding_below``'s kept pair)."""

from __future__ import annotations

from typing import Any

import pytest

from branchline_audit.application.checkpointing import checkpoint_if_due
from branchline_audit.domain.verification import StoredCheckpoint
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    behind_the_ledgers_back,
    superuser,
)
from tests.integration.audit.refused_support import (
    REWRITTEN,
    SIGNED,
    counted_contexts,
    refused,
    rewrite_from,
    signed,
    signed_and_rewritten,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _keep_only(settings: BranchlineSettings, sizes: list[int]) -> None:
    await behind_the_ledgers_back(
        settings,
        "DELETE FROM audit_checkpoints WHERE NOT tree_size = ANY($1::bigint[])",
        sizes,
    )


async def test_a_refused_rounds_statements_do_not_grow_with_the_checkpoints(
    settings: BranchlineSettings,
) -> None:
    """Round 33 read every checkpoint and halved them each refused round (its statements
    grew as log2 of their number, the failing leaves proven again every round); now a later
    round checks the pair it found: the same statements at 4 and at 64 checkpoints."""
    async with counted_contexts(settings) as (fresh, logged):
        audit = fresh()
        await signed_and_rewritten(audit, settings)
        statements = {}
        for kept in ([*range(1, SIGNED + 1)], [16, 32, 48, SIGNED]):
            await _keep_only(settings, kept)
            audit.signed_leaves.clear()  # a process that proved none yet
            audit.refusal_pairs.clear()
            first = await refused(audit)
            logged.clear()
            later = await refused(audit)
            statements[len(kept)] = len(logged)
            assert later.detail == first.detail
            assert later.position == SIGNED
            assert later.rewritten_after == max(s for s in kept if s < REWRITTEN)
    assert statements[SIGNED] == statements[4], statements


async def test_a_second_rewrite_or_a_removed_checkpoint_moves_the_refusal(
    settings: BranchlineSettings,
) -> None:
    """D-11: what the refusal names follows the ledger between rounds: a second re-chaining
    rewrite further down, and then the checkpoint it was located after deleted by a DBA."""
    async with counted_contexts(settings) as (fresh, _):
        audit = fresh()
        await signed_and_rewritten(audit, settings)
        assert (await refused(audit)).rewritten_after == REWRITTEN - 1
        assert (await refused(audit)).rewritten_after == REWRITTEN - 1
        await rewrite_from(settings, 20)
        second = await refused(audit)
        assert second.rewritten_after == 19, second.detail
        assert "between positions 20 and 64" in second.detail
        await behind_the_ledgers_back(
            settings, "DELETE FROM audit_checkpoints WHERE tree_size = 19"
        )
        assert (await refused(audit)).rewritten_after == 18
        await behind_the_ledgers_back(
            settings, "DELETE FROM audit_checkpoints WHERE tree_size <= 18"
        )
        nowhere = await refused(audit)
        assert nowhere.rewritten_after is None, nowhere.detail
        assert "at or before position 64" in nowhere.detail


async def test_a_repaired_ledger_signs_at_the_next_round(settings: BranchlineSettings) -> None:
    """The rewrite undone behind the ledger's back between two refused rounds: the next round
    signs (the kept pair is only asked while the latest checkpoint is refused)."""
    async with counted_contexts(settings) as (fresh, _):
        audit = fresh()
        await signed(audit)
        async with superuser(settings) as conn:
            rows = await conn.fetch(
                "SELECT position, hash FROM audit_ledger WHERE position >= $1", REWRITTEN
            )
        await rewrite_from(settings, REWRITTEN)
        await refused(audit)
        await refused(audit)
        await behind_the_ledgers_back(
            settings,
            "UPDATE audit_ledger l SET hash = o.hash "
            "FROM unnest($1::bigint[], $2::bytea[]) AS o(position, hash) "
            "WHERE l.position = o.position",
            [r["position"] for r in rows],
            [r["hash"] for r in rows],
        )
        signed_now = await checkpoint_if_due(audit)
        assert isinstance(signed_now, StoredCheckpoint)
        assert signed_now.tree_size == SIGNED + 1


def _statements(logged: list[Any]) -> list[str]:
    return [" ".join(str(q.query).split())[:60] for q in logged]


async def test_a_fresh_process_refused_round_reads_each_leaf_and_path_once(
    settings: BranchlineSettings,
) -> None:
    """Round 35: a process that never proved the refused checkpoint (started after the
    rewrite) read its leaf, then its checkpoint and its path again every round (three more
    statements, the failing proof made again), and every leaf read came with an empty node
    query: a later round was 13 statements. Now the leaf and its path are one read (the
    node query only when there are nodes to ask), the note is the one just read: 7, the
    same verdicts. The first round's halving reads each probe's leaf and path together too."""
    async with counted_contexts(settings) as (fresh, logged):
        audit = fresh()
        await signed_and_rewritten(audit, settings)
        audit.signed_leaves.clear()  # a process that proved none yet
        audit.refusal_pairs.clear()
        audit.opened_notes.clear()
        logged.clear()
        first = await refused(audit)
        first_round = _statements(logged)
        logged.clear()
        later = await refused(audit)
        later_round = _statements(logged)
        logged.clear()
        again = await refused(audit)
        assert (later.detail, again.detail) == (first.detail, first.detail)
        assert later.rewritten_after == REWRITTEN - 1
        assert SIGNED not in audit.signed_leaves  # never proven: it fails every round
        # the round's own two reads, the refused leaf with its path (2), the kept pair's
        # checkpoints (1), their leaves with the failing one's path (2)
        assert len(later_round) == 7, later_round
        assert len(logged) == 7, _statements(logged)
        # 63 checkpoints below: 6 probes of 3 statements (leaf and path, note), after the
        # round's 2, the refused leaf's 2, the stored hint's read (none yet, Round 36) and
        # the sizes' 1, then the located pair stored as the next process's hint
        assert len(first_round) <= 7 + 3 * 6, first_round
