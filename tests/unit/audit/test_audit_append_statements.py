"""The values an append sends with its tail statement (#12): since Round 29 bound as arrays,
none pasted into the SQL text; read back exactly as given, the positions grouped by store in
the order each store first appears."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from branchline_audit.adapters.ledger import _TAIL, _tail
from branchline_shared.kafka.wire import SourcePosition

_BIGINT = st.integers(-(2**63), 2**63 - 1)
_NODES = st.lists(
    st.tuples(st.integers(0, 62), st.integers(0, 2**62), st.binary(min_size=32, max_size=32))
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


def test_the_tail_statement_has_only_placeholders() -> None:
    assert "$7" in _TAIL
    assert "'" not in _TAIL  # no literal of any kind: every value is a bound parameter


@given(_NODES, _PLACED)
def test_the_tail_holds_exactly_the_nodes_and_the_positions(
    nodes: list[tuple[int, int, bytes]],
    placed: list[tuple[int, uuid.UUID, SourcePosition]],
) -> None:
    values = _tail(nodes, placed)
    if not nodes and not placed:
        assert values is None
        return
    assert values is not None
    levels, indexes, hashes, sources, globals_, event_ids, positions = values
    assert list(zip(levels, indexes, hashes, strict=True)) == nodes
    rows = [
        (position, event_id, SourcePosition(source, at))
        for source, at, event_id, position in zip(
            sources, globals_, event_ids, positions, strict=True
        )
    ]
    stores = list(dict.fromkeys(p.source for _, _, p in placed))
    assert rows == [item for store in stores for item in placed if item[2].source == store]
