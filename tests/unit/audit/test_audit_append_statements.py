"""The statement an append sends before its ``COMMIT`` (#12): its source positions and
Merkle nodes as bound arrays of one fixed text (Round 27; until then values written out as
digits and hex into the SQL text), each row exactly as given."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from branchline_audit.adapters.ledger import _TAIL_SQL, _tail
from branchline_shared.kafka.wire import SourcePosition

_BIGINT = st.integers(-(2**63), 2**63 - 1)
_NODES = st.lists(
    st.tuples(st.integers(1, 62), st.integers(0, 2**62), st.binary(min_size=32, max_size=32))
)
_PLACED = st.lists(
    st.tuples(
        _BIGINT,
        st.uuids(),
        st.builds(
            SourcePosition,
            st.sampled_from(["intake", "followup", "x'); DROP", "é\n\\"])
            | st.text(min_size=0, max_size=8),
            _BIGINT,
        ),
    )
)


@given(_PLACED, _NODES)
def test_the_tail_binds_exactly_the_positions_and_the_nodes(
    placed: list[tuple[int, uuid.UUID, SourcePosition]], nodes: list[tuple[int, int, bytes]]
) -> None:
    arguments = _tail(placed, nodes)
    if not placed and not nodes:
        assert arguments is None
        return
    assert arguments is not None
    sources, stored_at, event_ids, positions, levels, indexes, hashes = arguments
    rows = [
        (position, event_id, SourcePosition(source, at))
        for source, at, event_id, position in zip(
            sources, stored_at, event_ids, positions, strict=True
        )
    ]
    # Grouped by store in the order each first appears, the order within a store kept.
    stores = list(dict.fromkeys(p.source for _, _, p in placed))
    assert rows == [item for store in stores for item in placed if item[2].source == store]
    assert list(zip(levels, indexes, hashes, strict=True)) == nodes


def test_the_tail_statement_holds_no_value() -> None:
    """One fixed text, every value a parameter ($1..$7): nothing sent reaches the SQL."""
    assert [f"${n}" in _TAIL_SQL for n in range(1, 9)] == [True] * 7 + [False]
    assert "decode(" not in _TAIL_SQL
