"""SQL telling a stored time no append writes (an infinity, a year outside 1..9999, which
asyncpg refuses or reads as a naive extreme) from the others: such a time was written behind
the ledger's back, and the trail's readers name the entry (``AlteredEntry``, D-11) instead of
failing with the time's error (#12)."""

from __future__ import annotations

from collections.abc import Sequence

from branchline_audit.domain.verification import ROW_FIELDS

WRITTEN_TIME = "{0} >= '0001-01-01 00:00:00+00' AND {0} < '10000-01-01 00:00:00+00'"
"""SQL true for a time an append may write in the column ``{0}`` (NULL for NULL)."""

LEDGER_TIMES = ("appended_at", "occurred_at", "pruned_at")
"""The ledger's time columns."""

ALTERED_ROW = " OR ".join(f"NOT ({WRITTEN_TIME.format(c)})" for c in LEDGER_TIMES)
"""SQL true for a ledger row holding a time no append writes. Word for word the predicate of
the partial index ``audit_ledger_altered`` (audit migration 008), which holds only such rows:
a query whose condition includes it reads that (normally empty) index, not the ledger (#12)."""


def unwritten_times(columns: Sequence[str]) -> str:
    """SQL naming each of ``columns`` holding a time no append writes, as PostgreSQL shows it
    (``appended_at holds 'infinity'``); NULL when none does."""
    cases = ", ".join(
        f"CASE WHEN NOT ({WRITTEN_TIME.format(c)}) THEN format('{c} holds %L', {c}) END"
        for c in columns
    )
    return f"nullif(concat_ws(', ', {cases}), '')"


READ_COLUMNS = ", ".join(
    [
        *(f"timestamptz_send({f}) AS {f}" if f in LEDGER_TIMES else f for f in ROW_FIELDS),
        f"{unwritten_times(LEDGER_TIMES)} AS unwritten",
    ]
)
"""The trail readers' columns (pages, an entry, prune candidates, relationship facts): the
row's :data:`ROW_FIELDS`, the three times in their binary form, which no time fails to decode
(asyncpg refuses a year past 9999 or before 1, and reads an infinity as a naive extreme), then
the words saying which of them holds a time no append writes (``unwritten``):
:func:`~branchline_audit.domain.verification.reader_entries` makes their entries (#12)."""


_SIGNED_LEAF = (
    "SELECT int8send(c.tree_size) || coalesce(l.hash, ''::bytea) FROM audit_checkpoints c "
    "LEFT JOIN audit_ledger l ON l.position = c.tree_size"
)
"""A checkpoint's tree size (8 bytes, big-endian) and the stored hash of the entry at that
size, its last leaf (nothing when that entry is gone): :func:`with_neighbours`'s
``signed_leaf``."""


def with_neighbours(read: str) -> str:
    """``read`` (a query of :data:`READ_COLUMNS`, any order and limit of its own), its rows in
    position order, each with the links beside it that the read does not hold:
    ``after_prev``, the ``prev_hash`` of the entry at the position after (NULL when that
    entry is in the read, or there is none yet), and, for the read's first row only,
    ``before_hash``, the hash of the entry at the position before (NULL otherwise, or at
    position 1). Each a primary-key probe (a scalar subquery under a CASE on ``lag``/``lead``
    over the read's positions, run only where it is asked for): a position-ordered page reads
    two more (its first entry's and its last's), a single entry two, a filtered read one per
    entry whose successor it does not hold, and one (#12).

    The link after is the one a served entry's soundness needs: an entry rewritten so that
    its own hash holds has another hash, which the entry after it no longer names; the link
    before tells only of the entry before, which a filtered read does not serve.

    The read's last row also carries ``signed_leaf`` (:data:`_SIGNED_LEAF`): the smallest
    signed checkpoint covering it (the latest when none does yet) and the stored hash of that
    checkpoint's last entry, two index probes, so that the reader holds the entries it serves
    against a signed checkpoint (a rewrite with every later hash recomputed changes that hash,
    which the checkpoint signed; ``application/signed_leaves.py``, Round 28); NULL without a
    checkpoint."""
    links = (
        "CASE WHEN lag(p.position) OVER w IS NULL THEN "  # noqa: S608 - fixed text
        "(SELECT b.hash FROM audit_ledger b WHERE b.position = p.position - 1) END "
        "AS before_hash, "
        "CASE WHEN lead(p.position) OVER w IS DISTINCT FROM p.position + 1 THEN "
        "(SELECT a.prev_hash FROM audit_ledger a WHERE a.position = p.position + 1) END "
        "AS after_prev, "
        "CASE WHEN lead(p.position) OVER w IS NULL THEN coalesce("
        f"({_SIGNED_LEAF} WHERE c.tree_size >= p.position ORDER BY c.tree_size LIMIT 1), "
        f"({_SIGNED_LEAF} ORDER BY c.tree_size DESC LIMIT 1)) END "
        "AS signed_leaf"
    )
    window = "WINDOW w AS (ORDER BY p.position) ORDER BY p.position"
    return f"SELECT p.*, {links} FROM ({read}) p {window}"  # noqa: S608 - fixed text, bound values
