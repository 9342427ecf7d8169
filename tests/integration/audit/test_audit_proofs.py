"""Inclusion and consistency proofs served from the stored tree check against the signed
checkpoints with nothing but the verifier key (RFC 9162, C2SP signed notes)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from branchline_audit.adapters.ledger import UnstorableEvent
from branchline_audit.application.checkpointing import checkpoint_if_due, checkpoint_now
from branchline_audit.application.context import AuditContext
from branchline_audit.application.proofs import (
    ProofRefusal,
    ProofRefused,
    consistency,
    inclusion,
)
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.domain.merkle import (
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from branchline_audit.domain.note import Verifier, open_checkpoint
from branchline_audit.domain.subtrees import (
    RecordingHasher,
    build_subtrees,
    required,
    subtree_work,
)
from branchline_shared.clock import FixedClock
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    behind_the_ledgers_back,
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
        # What a proof reads, not how long it takes (a timing assertion would only measure
        # the machine): the rows the proof's ranges need, entry hashes and cached nodes,
        # stay within a small multiple of the tree's height.
        bound = 6 * checkpoint.tree_size.bit_length()
        for position in rng.sample(range(1, 100_001), 20):
            recorder = RecordingHasher()
            inclusion_proof(position - 1, checkpoint.tree_size, recorder)
            needs = required(recorder.ranges)
            assert len(needs.leaf_indices) + len(needs.nodes) <= bound, (position, needs)
            proof = await inclusion(audit, position)
            assert verify_inclusion(
                position - 1,
                checkpoint.tree_size,
                proof.leaf_hash,
                proof.path,
                checkpoint.root_hash,
            )


async def _stored_nodes(audit: AuditContext) -> dict[tuple[int, int], bytes]:
    rows = await audit.ledger.pool.fetch("SELECT level, node_index, hash FROM audit_merkle_nodes")
    return {(r["level"], r["node_index"]): bytes(r["hash"]) for r in rows}


async def _recomputed_nodes(audit: AuditContext) -> dict[tuple[int, int], bytes]:
    """Every cached node as a build from all stored entry hashes gives it."""
    hashes = [e.entry.hash async for e in audit.ledger.scan_stored()]
    work = subtree_work(len(hashes), {})
    nodes = build_subtrees(work, dict(enumerate(hashes)), {})
    return {(level, index): value for level, index, value in nodes}


async def test_the_cached_subtrees_equal_a_build_from_the_stored_entries(
    settings: BranchlineSettings,
) -> None:
    """#12: an append builds its subtrees from the hashes it has just computed (reading back
    only older ones); what it stores is byte for byte the cache that the stored entries give,
    for appends of any size across node boundaries, also after nodes went missing."""
    rng = random.Random(1612)
    async with audit_context(quick_settings(settings)) as audit:
        total = 0
        for step in (15, 1, 240, 17, 500, 31, 257, 500, 3, 700):
            await append_in_batches(
                audit.ledger,
                random_events(step, rng, start=total),
                now=T0,
                batch=rng.choice((1, 7, 16, 100, 500)),
            )
            total += step
            if step == 500:  # the newest nodes lost: the next append back-fills them
                await behind_the_ledgers_back(
                    settings,
                    "DELETE FROM audit_merkle_nodes WHERE (level, node_index) IN (SELECT level, "
                    "node_index FROM audit_merkle_nodes ORDER BY level DESC, node_index DESC "
                    "LIMIT 5)",
                )
                continue
            stored = await _stored_nodes(audit)
            assert stored == await _recomputed_nodes(audit)
        assert total == 2264
        assert max(level for level, _ in stored) == 8
        leaves = await _leaves(audit)
        assert (await checkpoint_now(audit)).root_hash == root(leaves)


async def test_concurrent_appends_stay_serialised_and_a_refused_one_leaves_nothing(
    settings: BranchlineSettings,
) -> None:
    """#12: appends from several connections at once (each reading what it needs in one
    statement after the ledger lock) take gap-free positions one after the other; one
    refused mid-way rolls back whole and its connection serves the next append; the chain
    and the cached subtrees hold."""
    rng = random.Random(1210)
    async with audit_context(quick_settings(settings)) as audit:
        batches = [random_events(37, rng, start=i * 37) for i in range(8)]
        await asyncio.gather(*(audit.ledger.append(batch, now=T0) for batch in batches))
        refused = random_events(3, rng, start=1000)
        refused[2]["data"] = {"note": "a\x00b"}
        with pytest.raises(UnstorableEvent):
            await audit.ledger.append(refused, now=T0)
        for _ in range(4):  # every connection of the pool, the refused one's included
            assert await audit.ledger.append(random_events(5, rng, start=2000), now=T0) == 5
        positions = [e.entry.position async for e in audit.ledger.scan_stored()]
        assert positions == list(range(1, 8 * 37 + 4 * 5 + 1))
        assert await _stored_nodes(audit) == await _recomputed_nodes(audit)
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok
        assert verdict.entries == len(positions)
