"""Inclusion and consistency proofs served from the stored tree check against the signed
checkpoints with nothing but the verifier key (RFC 9162, C2SP signed notes)."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from branchline_audit.application.checkpointing import checkpoint_if_due, checkpoint_now
from branchline_audit.application.context import AuditContext
from branchline_audit.application.proofs import (
    ProofRefusal,
    ProofRefused,
    consistency,
    inclusion,
)
from branchline_audit.domain.merkle import (
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from branchline_audit.domain.note import Verifier, open_checkpoint
from branchline_shared.clock import FixedClock
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    quick_settings,
    random_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _trusted(audit: AuditContext) -> Verifier:
    """What a third party holds: the verifier key string, parsed from its text form."""
    return Verifier.from_verifier_key(audit.signer.verifier_key_string())


async def _leaves(audit: AuditContext) -> list[bytes]:
    return [leaf_hash(e.entry.hash) async for e in audit.ledger.scan_stored()]


async def test_every_entry_of_a_random_ledger_is_proven_against_the_signed_root(
    settings: BranchlineSettings,
) -> None:
    rng = random.Random(9162)
    async with audit_context(quick_settings(settings)) as audit:
        sizes = []
        total = 0
        for _ in range(6):
            batch = rng.randint(1, 180)
            await append_in_batches(
                audit.ledger,
                random_events(batch, rng, start=total),
                now=T0,
                batch=rng.randint(1, 60),
            )
            total += batch
            sizes.append((await checkpoint_now(audit)).tree_size)
        leaves = await _leaves(audit)
        trusted = _trusted(audit)
        checkpoint = open_checkpoint(
            (await audit.checkpoints.latest()).note,  # type: ignore[union-attr]
            [trusted],
            origin=settings.audit_log_origin,
        )
        assert checkpoint.size == total
        assert checkpoint.root == root(leaves)  # the cached subtrees agree with a full rebuild
        for position in range(1, total + 1):
            proof = await inclusion(audit, position)
            assert proof.checkpoint.tree_size == total
            assert proof.leaf_hash == leaves[position - 1]
            assert verify_inclusion(
                position - 1, checkpoint.size, proof.leaf_hash, proof.path, checkpoint.root
            ), position
        # consistency between every pair of checkpoints an auditor may have kept
        roots = {s: root(leaves[:s]) for s in sizes}
        for i, first in enumerate(sizes):
            for second in sizes[i:]:
                path = await consistency(audit, first, second)
                assert verify_consistency(first, second, roots[first], roots[second], path)


async def test_forged_proofs_fail(settings: BranchlineSettings) -> None:
    async with audit_context(quick_settings(settings)) as audit:
        await append_in_batches(audit.ledger, random_events(300, random.Random(1)), now=T0)
        first = await checkpoint_now(audit)
        await append_in_batches(
            audit.ledger, random_events(213, random.Random(2), start=300), now=T0
        )
        second = await checkpoint_now(audit)
        proof = await inclusion(audit, 42)
        size, good_root = second.tree_size, second.root_hash
        assert verify_inclusion(41, size, proof.leaf_hash, proof.path, good_root)
        flipped = [bytes([proof.path[0][0] ^ 1]) + proof.path[0][1:], *proof.path[1:]]
        assert not verify_inclusion(41, size, proof.leaf_hash, flipped, good_root)
        assert not verify_inclusion(42, size, proof.leaf_hash, proof.path, good_root)
        assert not verify_inclusion(41, 300, proof.leaf_hash, proof.path, good_root)
        assert not verify_inclusion(41, size, leaf_hash(b"\0" * 32), proof.path, good_root)
        assert not verify_inclusion(41, size, proof.leaf_hash, proof.path[:-1], good_root)
        path = await consistency(audit, first.tree_size, second.tree_size)
        assert verify_consistency(
            first.tree_size, second.tree_size, first.root_hash, second.root_hash, path
        )
        assert not verify_consistency(
            first.tree_size, second.tree_size, second.root_hash, first.root_hash, path
        )
        assert not verify_consistency(
            first.tree_size, second.tree_size, first.root_hash, second.root_hash, path[1:]
        )


async def test_an_entry_newer_than_the_latest_checkpoint_gets_a_checkpoint_at_once(
    settings: BranchlineSettings,
) -> None:
    async with audit_context(quick_settings(settings)) as audit:
        await append_in_batches(audit.ledger, random_events(10, random.Random(3)), now=T0)
        await checkpoint_now(audit)
        await append_in_batches(audit.ledger, random_events(5, random.Random(4), 10), now=T0)
        proof = await inclusion(audit, 15)
        assert proof.checkpoint.tree_size == 15
        assert (await audit.checkpoints.latest()).tree_size == 15  # type: ignore[union-attr]


async def test_refusals(settings: BranchlineSettings) -> None:
    async with audit_context(quick_settings(settings)) as audit:
        await append_in_batches(audit.ledger, random_events(20, random.Random(5)), now=T0)
        await checkpoint_now(audit)
        with pytest.raises(ProofRefused) as unknown:
            await inclusion(audit, 21)
        assert unknown.value.reason is ProofRefusal.UNKNOWN_POSITION
        with pytest.raises(ProofRefused) as backwards:
            await consistency(audit, 20, 10)
        assert backwards.value.reason is ProofRefusal.SIZES_OUT_OF_ORDER
        with pytest.raises(ProofRefused) as missing:
            await consistency(audit, 10, 20)
        assert missing.value.reason is ProofRefusal.UNKNOWN_CHECKPOINT
        assert await consistency(audit, 0, 20) == []


async def test_checkpoints_every_n_entries_or_t_seconds(settings: BranchlineSettings) -> None:
    clock = FixedClock(T0)
    s = quick_settings(
        settings, audit_checkpoint_every_entries=50, audit_checkpoint_interval_s=30.0
    )
    async with audit_context(s, clock=clock) as audit:
        await append_in_batches(audit.ledger, random_events(49, random.Random(6)), now=T0)
        assert await checkpoint_if_due(audit) is None  # 49 unsigned, 0 s old
        await append_in_batches(audit.ledger, random_events(1, random.Random(7), 49), now=T0)
        assert (await checkpoint_if_due(audit)).tree_size == 50  # type: ignore[union-attr]
        await append_in_batches(audit.ledger, random_events(3, random.Random(8), 50), now=T0)
        clock.set(T0 + timedelta(seconds=29))
        assert await checkpoint_if_due(audit) is None
        clock.set(T0 + timedelta(seconds=30))
        assert (await checkpoint_if_due(audit)).tree_size == 53  # type: ignore[union-attr]
        assert await checkpoint_if_due(audit) is None  # nothing unsigned


async def test_proofs_stay_fast_in_a_large_ledger(settings: BranchlineSettings) -> None:
    """100,000 entries: a proof reads a bounded number of rows from the subtree cache."""
    async with audit_context(quick_settings(settings)) as audit:
        rng = random.Random(10)
        events = random_events(100_000, rng)
        await append_in_batches(audit.ledger, events, now=T0, batch=5000)
        checkpoint = await checkpoint_now(audit)
        started = time.perf_counter()
        for position in rng.sample(range(1, 100_001), 20):
            proof = await inclusion(audit, position)
            assert verify_inclusion(
                position - 1,
                checkpoint.tree_size,
                proof.leaf_hash,
                proof.path,
                checkpoint.root_hash,
            )
        per_proof = (time.perf_counter() - started) / 20
        assert per_proof < 0.1, per_proof
