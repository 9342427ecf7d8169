"""Served entries held against a signed checkpoint (D-11 tamper evidence, Round 28).

A reader checks each entry it serves by itself and by its links (``ServedCheck``), which a
rewrite with every later hash recomputed passes: only the signed checkpoints see it. Every
read's statement therefore also reads, beside its last entry, the smallest signed checkpoint
covering it (the latest when none does yet) and the stored hash of the entry at that
checkpoint's size, its last leaf (``with_neighbours``' ``signed_leaf``: two index probes).
A rewrite of any entry up to that size, with every later hash recomputed, changes that hash.

The first time a process meets a checkpoint it proves that leaf against the checkpoint's
signed root (the note's signature checked with the log's key, the inclusion path read from
the stored tree, as a proof does: three statements, once per checkpoint and process) and
keeps the proven hash; every later read compares the hash it read with it, in memory. A leaf
that does not lead to the signed root, or differs from the proven one, refuses the read
(:class:`UnsignedHistory`, 409 ``ledger-integrity``, or an export's signed incomplete
trailer), naming the checkpoint's position.

What this does not see: a rewrite that stops re-chaining before the checkpoint's size (a
broken link, found by verify and by a reader holding it), and entries newer than the latest
checkpoint (nothing is signed over them yet; the checkpointer signs what is stored)."""

from __future__ import annotations

from collections.abc import Sequence

from branchline_audit.application.context import AuditContext
from branchline_audit.domain.merkle import inclusion_proof, leaf_hash, verify_inclusion
from branchline_audit.domain.note import NoteError, open_checkpoint
from branchline_audit.domain.subtrees import MissingTreeData, RecordingHasher, Requirements
from branchline_audit.domain.verification import StoredEntry, UnsignedHistory


async def unsigned_history(
    audit: AuditContext, entries: Sequence[StoredEntry]
) -> UnsignedHistory | None:
    """Why the checkpoint read with ``entries`` (their last's ``signed_leaf``) refuses them,
    or None (no checkpoint read, or its last leaf is the signed one)."""
    leaf = entries[-1].signed_leaf if entries else None
    if leaf is None:
        return None
    unsigned = await _held(audit, *leaf)
    if unsigned is None:
        return None
    # the refusal names the entries it refuses, not only the checkpoint (#12, Round 32)
    return unsigned.refusing(entries[0].entry.position, entries[-1].entry.position)


async def refuse_unsigned(audit: AuditContext, leaf: tuple[int, bytes | None]) -> None:
    """Raises :class:`UnsignedHistory` when ``leaf`` (a read's ``signed_leaf``) is not the
    last leaf of its signed checkpoint: the check the ledger's reads of legal holds and
    relationship ends make (``PostgresLedger.hold_facts_to``, D-11, #12)."""
    unsigned = await _held(audit, *leaf)
    if unsigned is not None:
        raise unsigned


async def unsigned_latest(audit: AuditContext) -> UnsignedHistory | None:
    """Why the latest signed checkpoint's last leaf is not the stored hash at its size (the
    ledger rewritten up to it with every later hash recomputed), or None. Asked before a
    checkpoint is signed (``checkpoint_now``): a checkpoint signed over such a rewrite would
    cover it for every read after, so none is signed while the latest one does not hold."""
    latest = await audit.checkpoints.latest()
    if latest is None or latest.tree_size == 0:
        return None
    size = latest.tree_size
    hashes, _ = await audit.ledger.tree_data(Requirements(frozenset({size - 1}), frozenset()))
    return await _held(audit, size, hashes.get(size - 1))


async def _held(audit: AuditContext, size: int, stored: bytes | None) -> UnsignedHistory | None:
    why = await _why_not_held(audit, size, stored)
    if why is None:
        return None
    return UnsignedHistory(size, why, rewritten_after=await _last_holding_below(audit, size))


async def _why_not_held(audit: AuditContext, size: int, stored: bytes | None) -> str | None:
    """Why ``stored`` (the stored hash at ``size``) is not the signed checkpoint's last leaf,
    or None (proven now or before: kept in ``audit.signed_leaves``)."""
    if stored is None:
        return "the entry is gone"
    proven = audit.signed_leaves.get(size)
    if proven is not None:
        return None if stored == proven else _NOT_PROVEN
    why = await _unproven(audit, size, stored)
    if why is None:
        audit.signed_leaves[size] = stored
    return why


async def _last_holding_below(audit: AuditContext, size: int) -> int | None:
    """Where the rewrite refused at checkpoint ``size`` lies, as far as the signed checkpoints
    tell (#12, Round 32): the size of a signed checkpoint below ``size`` whose last leaf
    holds and whose next one does not, found by halving the checkpoints below (a re-chaining
    rewrite changes every later leaf, so at most about log2(checkpoints) leaves are read, each
    proven once per process); None when the smallest does not hold either. Only a refusal
    asks (the ledger contradicts a signed checkpoint). Not the entry itself: a signed root
    cannot be split below its checkpoint's size without trusting the stored tree."""
    sizes = sorted(c.tree_size for c in await audit.checkpoints.all() if 0 < c.tree_size < size)
    low, high = 0, len(sizes)  # sizes[:low] hold (as far as looked), sizes[high:] do not
    while low < high:
        middle = (low + high) // 2
        at = sizes[middle]
        hashes, _ = await audit.ledger.tree_data(Requirements(frozenset({at - 1}), frozenset()))
        if await _why_not_held(audit, at, hashes.get(at - 1)) is None:
            low = middle + 1
        else:
            high = middle
    return sizes[low - 1] if low > 0 else None


_NOT_PROVEN = "its hash is not the one proven against the signed checkpoint"


async def _unproven(audit: AuditContext, size: int, stored: bytes) -> str | None:
    """Why the entry hash ``stored`` at position ``size`` is not the last leaf of the signed
    checkpoint of that size, or None: its inclusion path, from the stored tree, leads to the
    root of the checkpoint's note, whose signature is the log's."""
    checkpoint = await audit.checkpoints.at(size)
    if checkpoint is None:
        return "its checkpoint is gone"
    try:
        signed = open_checkpoint(checkpoint.note, [audit.signer.verifier()], origin=audit.origin)
    except NoteError as error:
        return f"its checkpoint's signed note does not hold ({error})"
    if signed.size != size:
        return "its checkpoint's signed note is of another size"
    recorder = RecordingHasher()
    inclusion_proof(size - 1, size, recorder)
    try:
        path = inclusion_proof(size - 1, size, await audit.ledger.range_hasher(recorder.ranges))
    except MissingTreeData:
        return "the stored tree does not hold its path"
    if not verify_inclusion(size - 1, size, leaf_hash(stored), path, signed.root):
        return "its hash does not lead to the signed root"
    return None
