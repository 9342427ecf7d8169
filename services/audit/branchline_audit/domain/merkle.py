"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

Why this exact tree: auditors must be able to check Branchline's proofs with any existing
transparency-log tool (Go's ``transparency-dev/merkle``, Trillian, Sigstore, Tessera), so the
hashing follows RFC 9162 section 2.1 to the byte:

- hash function SHA-256; ``leaf_hash(d) = SHA-256(0x00 || d)``;
  ``node_hash(l, r) = SHA-256(0x01 || l || r)``;
- ``MTH({}) = SHA-256("")``, ``MTH({d0}) = leaf_hash(d0)``, and for ``n > 1`` with ``k`` the
  largest power of two smaller than ``n``:
  ``MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))``.

The ledger's leaf ``i`` (0-based) is ledger position ``i + 1`` and its leaf input is the 32 raw
bytes of that entry's chain hash (see :mod:`.canonical`).

Proof *generation* never needs all leaves: it asks a :data:`RangeHasher` for ``MTH(D[start:end])``
of the few ranges it needs. Every range asked for starts at a multiple of a power of two at least
as large as the range, so a storage layer can answer from cached complete subtrees
(:func:`perfect_subtree_ranges`, :func:`range_hasher_from_perfect`). Proof *verification* follows
the algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""``MTH({})``: the root of the empty tree."""

RangeHasher: TypeAlias = Callable[[int, int], bytes]
"""``range_hash(start, end)`` returns ``MTH(D[start:end])`` for ``0 <= start < end``."""

LeafSource: TypeAlias = Sequence[bytes] | RangeHasher
"""Either all leaf hashes in order, or a :data:`RangeHasher` over them."""


def leaf_hash(data: bytes) -> bytes:
    """Hash a leaf input with the 0x00 prefix, so a leaf can never pass for an inner node
    (second-preimage protection of RFC 6962)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes with the 0x01 prefix (domain-separated from leaves)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 (``k < n <= 2k``): where MTH splits a tree of ``n > 1`` leaves."""
    if n < 2:
        raise ValueError(f"a split needs at least 2 leaves, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def _require_hash(value: bytes, what: str) -> None:
    """Reject anything that is not a 32-byte SHA-256 value early, with the culprit named."""
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


class CompactRange:
    """Incremental Merkle tree over leaves ``[0, size)`` in O(log n) memory.

    It keeps only the roots of the complete subtrees that make up the tree: one per set bit of
    ``size``, largest (leftmost) first. That is all a checkpointer needs to append leaf hashes
    one by one and produce the RFC 6962 root at any size; ``size`` and ``hashes`` are the state
    to persist, :meth:`restore` resumes from it.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def restore(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Resume from persisted state; refuses state whose shape cannot be right."""
        if size < 0:
            raise ValueError(f"size must not be negative, got {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a range of size {size} has {size.bit_count()} subtree hashes, got {len(hashes)}"
            )
        for i, value in enumerate(hashes):
            _require_hash(value, f"subtree hash {i}")
        compact = cls()
        compact._size = size
        compact._hashes = list(hashes)
        return compact

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def end(self) -> int:
        """The index of the next leaf (the size: the tree starts at leaf 0)."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the complete subtrees, leftmost (largest) first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash, merging equal-sized subtrees like a binary carry."""
        _require_hash(leaf, "leaf hash")
        node = leaf
        carry = self._size
        while carry & 1:
            node = node_hash(self._hashes.pop(), node)
            carry >>= 1
        self._hashes.append(node)
        self._size += 1

    def append_subtree(self, level: int, subtree: bytes) -> None:
        """Add the root of the next complete subtree of ``2**level`` leaves (``size`` a
        multiple of it): :meth:`append` for that many leaves at once, by the same carry."""
        _require_hash(subtree, "subtree hash")
        if level < 0 or self._size % (1 << level):
            raise ValueError(f"a subtree of level {level} cannot follow {self._size} leaves")
        node = subtree
        carry = self._size >> level
        while carry & 1:
            node = node_hash(self._hashes.pop(), node)
            carry >>= 1
        self._hashes.append(node)
        self._size += 1 << level

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the current tree: the subtree roots folded from the right."""
        return fold_subtree_roots(self._hashes)


class AlignedRange:
    """The complete subtrees that leaves ``[start, start + size)`` of a tree form, leaves
    appended one by one: what a verifier of a segment of the ledger hands over so that the
    whole tree is joined in O(log n) (:meth:`CompactRange.append_subtree`, #12)."""

    __slots__ = ("_nodes", "_size", "_start")

    def __init__(self, start: int) -> None:
        self._start = start
        self._size = 0
        self._nodes: list[tuple[int, bytes]] = []

    @property
    def nodes(self) -> tuple[tuple[int, bytes], ...]:
        """``(level, root)`` of each subtree, left to right."""
        return tuple(self._nodes)

    @property
    def end(self) -> int:
        """The index of the next leaf in the whole tree."""
        return self._start + self._size

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash; a subtree is merged with its left sibling when the range
        holds that sibling whole (the last subtree, of the same level)."""
        _require_hash(leaf, "leaf hash")
        self._append_node(0, leaf)

    def append_subtree(self, level: int, subtree: bytes) -> None:
        """Add the root of the next complete subtree of ``2**level`` leaves (:attr:`end` a
        multiple of it): :meth:`append` for that many leaves at once, by the same merges
        (#12)."""
        _require_hash(subtree, "subtree hash")
        if level < 0 or self.end % (1 << level):
            raise ValueError(f"a subtree of level {level} cannot start at leaf {self.end}")
        self._append_node(level, subtree)

    def _append_node(self, level: int, node: bytes) -> None:
        index, added = self.end >> level, 1 << level
        while index & 1 and self._nodes and self._nodes[-1][0] == level:
            node = node_hash(self._nodes.pop()[1], node)
            level += 1
            index >>= 1
        self._nodes.append((level, node))
        self._size += added


def fold_subtree_roots(subtree_roots: Sequence[bytes]) -> bytes:
    """Combine the roots of consecutive complete subtrees (sizes strictly decreasing from the
    left) into MTH of their union: ``node_hash(a, node_hash(b, ...))``. Empty gives
    :data:`EMPTY_ROOT`."""
    if not subtree_roots:
        return EMPTY_ROOT
    result = subtree_roots[-1]
    for left in reversed(subtree_roots[:-1]):
        result = node_hash(left, result)
    return result


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes (already ``leaf_hash``-ed), for any count including zero."""
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


def perfect_subtree_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into the complete subtrees MTH combines, largest first.

    These are the binary digits of ``end - start``. For every range a proof asks for, each piece
    is aligned (its start is a multiple of its size), so it names one node of the full tree that
    a storage layer can cache for ever.
    """
    if not 0 <= start < end:
        raise ValueError(f"need 0 <= start < end, got [{start}, {end})")
    pieces: list[tuple[int, int]] = []
    remaining = end - start
    cursor = start
    for bit in reversed(range(remaining.bit_length())):
        width = 1 << bit
        if remaining & width:
            pieces.append((cursor, cursor + width))
            cursor += width
    return pieces


def range_hasher_from_perfect(perfect: RangeHasher) -> RangeHasher:
    """Build a :data:`RangeHasher` from one that only handles complete (power-of-two) subtrees,
    so storage only has to cache and compute perfect subtrees."""

    def range_hash(start: int, end: int) -> bytes:
        return fold_subtree_roots([perfect(s, e) for s, e in perfect_subtree_ranges(start, end)])

    return range_hash


def range_hasher_from_leaves(leaf_hashes: Sequence[bytes]) -> RangeHasher:
    """A :data:`RangeHasher` over leaf hashes held in memory (O(end - start) per call)."""

    def range_hash(start: int, end: int) -> bytes:
        if not 0 <= start < end <= len(leaf_hashes):
            raise ValueError(f"range [{start}, {end}) is outside {len(leaf_hashes)} leaves")
        return root(leaf_hashes[i] for i in range(start, end))

    return range_hash


def _as_range_hasher(source: LeafSource) -> RangeHasher:
    if callable(source):
        return source
    return range_hasher_from_leaves(source)


def inclusion_proof(index: int, size: int, source: LeafSource) -> list[bytes]:
    """The audit path ``PATH(index, D[size])`` of RFC 9162 section 2.1.3.1, leaf upwards.

    Computed top-down (one range hash per level), then reversed into the RFC's order.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    range_hash = _as_range_hasher(source)
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + largest_power_of_two_below(hi - lo)
        if index < mid:
            path.append(range_hash(mid, hi))
            hi = mid
        else:
            path.append(range_hash(lo, mid))
            lo = mid
    path.reverse()
    return path


def consistency_proof(m: int, n: int, source: LeafSource) -> list[bytes]:
    """``PROOF(m, D[n])`` of RFC 9162 section 2.1.4.1 (``SUBPROOF(m, D[n], true)``).

    Empty when ``m == 0`` or ``m == n``: there is nothing to prove then.
    """
    if not 0 <= m <= n:
        raise ValueError(f"need 0 <= m <= n, got m={m}, n={n}")
    if m in (0, n):
        return []
    range_hash = _as_range_hasher(source)
    path: list[bytes] = []
    lo, hi, first, complete = 0, n, m, True
    while first != hi - lo:
        k = largest_power_of_two_below(hi - lo)
        if first <= k:
            path.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k))
            lo, first, complete = lo + k, first - k, False
    if not complete:
        path.append(range_hash(lo, hi))
    path.reverse()
    return path


def _shift_until_lsb_set_or_zero(fn: int, sn: int) -> tuple[int, int]:
    """RFC 9162: "right-shift both fn and sn equally until either LSB(fn) is set or fn is 0"."""
    while not fn & 1 and fn != 0:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """Steps 1-4 of RFC 9162 section 2.1.3.2: the root the proof implies, or ``None`` when the
    proof cannot belong to a tree of this size."""
    if not 0 <= index < size or not _is_hash(leaf) or not all(_is_hash(p) for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_until_lsb_set_or_zero(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """True iff ``proof`` shows ``leaf_hash`` at ``index`` in the tree ``(size, root)``
    (RFC 9162 section 2.1.3.2, step 5 included)."""
    computed = root_from_inclusion_proof(index, size, leaf_hash, proof)
    return computed is not None and _is_hash(root) and computed == root


def verify_consistency(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]
) -> bool:
    """True iff the tree ``(n, root_n)`` extends the tree ``(m, root_m)``.

    ``0 < m < n`` runs RFC 9162 section 2.1.4.2 exactly. The RFC leaves the trivial cases open;
    here ``m == n`` needs an empty proof and equal roots, and ``m == 0`` an empty proof and
    ``root_m`` equal to the empty-tree root.
    """
    if not (_is_hash(root_m) and _is_hash(root_n) and all(_is_hash(c) for c in proof)):
        return False
    if not 0 <= m <= n:
        return False
    if m == 0:
        return not proof and root_m == EMPTY_ROOT and (n > 0 or root_n == EMPTY_ROOT)
    if m == n:
        return not proof and root_m == root_n
    return _verify_consistency_rfc9162(m, n, root_m, root_n, proof)


def _verify_consistency_rfc9162(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, steps 1-7, for ``0 < first < second``."""
    if not proof:  # step 1
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_until_lsb_set_or_zero(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0  # step 7
