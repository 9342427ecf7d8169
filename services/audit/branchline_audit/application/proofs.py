"""Inclusion and consistency proofs, in the RFC 9162 form docs/api.md fixes.

An entry newer than the latest checkpoint gets a fresh checkpoint at once (so a proof is
always answered, never "retry later"). Every proof is checked against the signed root before
it is served: a damaged subtree cache shows up as an error here, not at the auditor's desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from branchline_audit.application.checkpointing import latest_covering
from branchline_audit.application.context import AuditContext
from branchline_audit.domain.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from branchline_audit.domain.subtrees import MissingTreeData, RecordingHasher
from branchline_audit.domain.verification import StoredCheckpoint, refuse_altered


class ProofRefusal(StrEnum):
    """Why a proof cannot be given."""

    UNKNOWN_POSITION = "unknown-position"
    UNKNOWN_CHECKPOINT = "unknown-checkpoint"
    SIZES_OUT_OF_ORDER = "sizes-out-of-order"
    """A consistency proof from a larger tree to a smaller one."""
    LEDGER_INTEGRITY = "ledger-integrity"
    """The stored tree does not lead to the signed root: the ledger was altered."""


class ProofRefused(Exception):
    """A proof that cannot be given: ``reason`` says why, ``detail`` in words."""

    def __init__(self, reason: ProofRefusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InclusionProof:
    position: int
    leaf_hash: bytes
    path: list[bytes]
    checkpoint: StoredCheckpoint


async def inclusion(audit: AuditContext, position: int) -> InclusionProof:
    stored = await audit.ledger.entry(position)
    if stored is None:
        size = await audit.ledger.size()
        raise ProofRefused(
            ProofRefusal.UNKNOWN_POSITION, f"no ledger entry at position {position} (size {size})"
        )
    refuse_altered([stored])  # an entry altered behind the ledger's back is named (D-11)
    checkpoint = await latest_covering(audit, position)
    index, size = position - 1, checkpoint.tree_size
    recorder = RecordingHasher()
    inclusion_proof(index, size, recorder)
    try:
        path = inclusion_proof(index, size, await audit.ledger.range_hasher(recorder.ranges))
    except MissingTreeData as error:
        raise ProofRefused(ProofRefusal.LEDGER_INTEGRITY, str(error)) from None
    leaf = leaf_hash(stored.entry.hash)
    if not verify_inclusion(index, size, leaf, path, checkpoint.root_hash):
        raise ProofRefused(
            ProofRefusal.LEDGER_INTEGRITY,
            f"the proof for position {position} does not lead to the signed root: the ledger "
            "was altered; run GET /v1/audit/verify",
        )
    return InclusionProof(position, leaf, path, checkpoint)


async def consistency(audit: AuditContext, first: int, second: int) -> list[bytes]:
    if first > second:
        raise ProofRefused(
            ProofRefusal.SIZES_OUT_OF_ORDER,
            f"the first tree size ({first}) must not exceed the second ({second})",
        )
    old = await _checkpoint(audit, first)
    new = await _checkpoint(audit, second)
    recorder = RecordingHasher()
    consistency_proof(first, second, recorder)
    try:
        proof = consistency_proof(first, second, await audit.ledger.range_hasher(recorder.ranges))
    except MissingTreeData as error:
        raise ProofRefused(ProofRefusal.LEDGER_INTEGRITY, str(error)) from None
    if not verify_consistency(first, second, old.root_hash, new.root_hash, proof):
        raise ProofRefused(
            ProofRefusal.LEDGER_INTEGRITY,
            f"checkpoints {first} and {second} are not consistent with the stored tree: the "
            "ledger was altered; run GET /v1/audit/verify",
        )
    return proof


async def _checkpoint(audit: AuditContext, size: int) -> StoredCheckpoint:
    if size == 0:
        return StoredCheckpoint(tree_size=0, root_hash=EMPTY_ROOT, note="")
    checkpoint = await audit.checkpoints.at(size)
    if checkpoint is None:
        raise ProofRefused(
            ProofRefusal.UNKNOWN_CHECKPOINT, f"no signed checkpoint of tree size {size}"
        )
    return checkpoint
