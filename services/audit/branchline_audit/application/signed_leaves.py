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

from collections.abc import Collection, Sequence

from branchline_audit.application.context import AuditContext
from branchline_audit.domain.merkle import inclusion_proof, leaf_hash, verify_inclusion
from branchline_audit.domain.note import Checkpoint, NoteError, open_checkpoint
from branchline_audit.domain.subtrees import (
    MissingTreeData,
    RecordingHasher,
    Requirements,
    SubtreeSource,
    required,
)
from branchline_audit.domain.verification import (
    RefusalHint,
    StoredCheckpoint,
    StoredEntry,
    UnsignedHistory,
)

OPENED_NOTES = 256
"""How many checkpoint notes a process keeps opened (``AuditContext.opened_notes``)."""


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
    # the leaf and, unless it was proven, its path, in the same read; the note is latest's
    # (Round 35: a process that never proved it read them in three more statements)
    leaves, tree = await _tree_reads(audit, [size])
    why = await _why_not_held(audit, size, leaves.get(size), tree, latest)
    if why is None:
        return None
    return UnsignedHistory(size, why, rewritten_after=await _last_holding_below(audit, size))


async def _held(audit: AuditContext, size: int, stored: bytes | None) -> UnsignedHistory | None:
    why = await _why_not_held(audit, size, stored)
    if why is None:
        return None
    return UnsignedHistory(size, why, rewritten_after=await _last_holding_below(audit, size))


async def _why_not_held(
    audit: AuditContext,
    size: int,
    stored: bytes | None,
    tree: SubtreeSource | None = None,
    checkpoint: StoredCheckpoint | None = None,
) -> str | None:
    """Why ``stored`` (the stored hash at ``size``) is not the signed checkpoint's last leaf,
    or None (proven now or before: kept in ``audit.signed_leaves``). ``tree`` holds its path
    when the caller read it (:func:`_tree_reads`), ``checkpoint`` the checkpoint of ``size``
    when the caller has it; what is not given is read."""
    if stored is None:
        return "the entry is gone"
    proven = audit.signed_leaves.get(size)
    if proven is not None:
        return None if stored == proven else _NOT_PROVEN
    why = await _unproven(audit, size, stored, tree, checkpoint)
    if why is None:
        audit.signed_leaves[size] = stored
    return why


async def _tree_reads(
    audit: AuditContext, sizes: Collection[int]
) -> tuple[dict[int, bytes], SubtreeSource]:
    """The stored last leaves of the checkpoints of ``sizes`` (by size) and, for each one this
    process has not proven, the stored tree its inclusion path reads: one ``tree_data`` read
    (#12, Round 35: a proof's path read with the leaf, not after it)."""
    leaves = {size - 1 for size in sizes}
    ranges: list[tuple[int, int]] = []
    for size in sizes:
        if size not in audit.signed_leaves:
            recorder = RecordingHasher()
            inclusion_proof(size - 1, size, recorder)
            ranges.extend(recorder.ranges)
    needs = required(ranges)
    hashes, nodes = await audit.ledger.tree_data(
        Requirements(frozenset(leaves) | needs.leaf_indices, needs.nodes)
    )
    return {index + 1: hashes[index] for index in leaves if index in hashes}, SubtreeSource(
        hashes, nodes
    )


async def _last_holding_below(audit: AuditContext, size: int) -> int | None:
    """Where the rewrite refused at checkpoint ``size`` lies, as far as the signed checkpoints
    tell (#12, Round 32): the size of a signed checkpoint below ``size`` whose last leaf
    holds and whose next one does not; None when the smallest does not hold either. Only a
    refusal asks (the ledger contradicts a signed checkpoint). Not the entry itself: a signed
    root cannot be split below its checkpoint's size without trusting the stored tree.

    The pair found last for ``size`` is checked first (Round 34): while both checkpoints are
    there with nothing between, the lower's leaf still the one proven (in memory) and the
    upper's still failing, it is still an answer, in a bounded number of statements whatever
    the number of checkpoints. Anything a DBA changes that could move the answer (a leaf of
    either, a checkpoint added, removed or rewritten around them) fails that check, and the
    checkpoints are halved again.

    A process's first refusal at ``size`` has no pair yet: it reads the latest stored hint
    (``audit_refusal_hints``, Round 36: written where a halving located the rewrite) and
    checks it the same way, a cache that is proven again, never trusted; one that does not
    check out is halved past, and the pair the halving finds is stored for the next process
    (the hints it supersedes deleted with it, at most 16 kept: Round 37, audit migration 011;
    nothing here believes a hint, so one deleted costs at most a halving)."""
    pair = audit.refusal_pairs.get(size)
    if pair is not None and await _still_located(audit, size, *pair):
        return pair[0]
    hint = None
    if pair is None:
        # a process's first refusal at ``size``: where one located the rewrite before, as
        # stored (Round 36), checked exactly as a kept pair is; a hint that does not check
        # out (wrong, stale, forged) only costs its check before the halving
        hint = await audit.checkpoints.refusal_hint(size)
        if (
            hint is not None
            and hint.fits(size)
            and await _still_located(audit, size, hint.held, hint.failing)
        ):
            audit.refusal_pairs[size] = (hint.held, hint.failing)
            return hint.held
    held, failing = await _located(audit, size)
    audit.refusal_pairs[size] = (held, failing)
    located = RefusalHint(held=held, failing=failing)
    if located != hint:
        await audit.checkpoints.record_refusal_hint(size, located, now=audit.clock.now())
    return held


async def _located(audit: AuditContext, size: int) -> tuple[int | None, int]:
    """The pair ``(last holding, next)`` found by halving the checkpoints below ``size`` (a
    re-chaining rewrite changes every later leaf, so at most about log2(checkpoints) leaves
    are read, each proven once per process); ``size`` itself is the next when every one
    below holds. Reads only the checkpoints' sizes (Round 34; the notes were half the round
    at 10,000 checkpoints)."""
    sizes = await audit.checkpoints.sizes_below(size)
    low, high = 0, len(sizes)  # sizes[:low] hold (as far as looked), sizes[high:] do not
    while low < high:
        middle = (low + high) // 2
        leaves, tree = await _tree_reads(audit, [sizes[middle]])
        if await _why_not_held(audit, sizes[middle], leaves.get(sizes[middle]), tree):
            high = middle
        else:
            low = middle + 1
    held = sizes[low - 1] if low > 0 else None
    return held, sizes[low] if low < len(sizes) else size


async def _still_located(audit: AuditContext, size: int, held: int | None, failing: int) -> bool:
    """Whether ``held`` (None: none) and ``failing`` are still the last signed checkpoint below
    ``size`` that holds and the next one: both stored, none between (nor below ``failing``
    when ``held`` is None), ``held``'s leaf the one proven and ``failing``'s not (``size``'s
    own refusal is the caller's)."""
    pair = [s for s in (held, failing) if s is not None]
    stored = await audit.checkpoints.from_to(held or 1, failing)
    if [c.tree_size for c in stored] != pair:
        return False
    checkpoints = {c.tree_size: c for c in stored}
    # ``size``'s leaf was read by the caller: only the others', with the paths not proven
    leaves, tree = await _tree_reads(audit, [s for s in pair if s != size])
    if held is not None and await _why_not_held(
        audit, held, leaves.get(held), tree, checkpoints[held]
    ):
        return False
    return (
        failing == size
        or await _why_not_held(audit, failing, leaves.get(failing), tree, checkpoints[failing])
        is not None
    )


_NOT_PROVEN = "its hash is not the one proven against the signed checkpoint"


async def _unproven(
    audit: AuditContext,
    size: int,
    stored: bytes,
    tree: SubtreeSource | None,
    checkpoint: StoredCheckpoint | None,
) -> str | None:
    """Why the entry hash ``stored`` at position ``size`` is not the last leaf of the signed
    checkpoint of that size, or None: its inclusion path, from the stored tree (``tree``
    when the caller read it with the leaf), leads to the root of the checkpoint's note
    (``checkpoint`` when the caller has it), whose signature is the log's."""
    if checkpoint is None:
        checkpoint = await audit.checkpoints.at(size)
    if checkpoint is None:
        return "its checkpoint is gone"
    signed = _opened(audit, checkpoint.note)
    if isinstance(signed, str):
        return f"its checkpoint's signed note does not hold ({signed})"
    if signed.size != size:
        return "its checkpoint's signed note is of another size"
    recorder = RecordingHasher()
    inclusion_proof(size - 1, size, recorder)
    try:
        hasher = (
            tree.range_hasher()
            if tree is not None
            else await audit.ledger.range_hasher(recorder.ranges)
        )
        path = inclusion_proof(size - 1, size, hasher)
    except MissingTreeData:
        return "the stored tree does not hold its path"
    if not verify_inclusion(size - 1, size, leaf_hash(stored), path, signed.root):
        return "its hash does not lead to the signed root"
    return None


def _opened(audit: AuditContext, note: str) -> Checkpoint | str:
    """``note`` opened with the log's key (its checkpoint, or why it does not hold), kept per
    process for the last :data:`OPENED_NOTES` notes (#12, Round 35): a refused checkpoint's
    proof, which fails, is made again every round, and the signature check was its cost. The
    note's text is the key, so a note changed behind the ledger's back is opened anew; the
    leaf and the path are compared every time."""
    kept = audit.opened_notes.pop(note, None)
    if kept is None:
        try:
            kept = open_checkpoint(note, [audit.signer.verifier()], origin=audit.origin)
        except NoteError as error:
            kept = str(error)
        while len(audit.opened_notes) >= OPENED_NOTES:
            del audit.opened_notes[next(iter(audit.opened_notes))]
    audit.opened_notes[note] = kept
    return kept
