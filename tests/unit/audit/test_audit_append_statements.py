"""The statements an append sends with its ``COMMIT`` (#12): values written out in the SQL
text, only digits and hexadecimal, read back exactly as given."""

from __future__ import annotations

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from branchline_audit.adapters.ledger import _nodes_statement, _positions_statement
from branchline_shared.kafka.wire import SourcePosition

_BIGINT = st.integers(-(2**63), 2**63 - 1)
_NODE = re.compile(r"\((\d+), (\d+), decode\('([0-9a-f]{64})', 'hex'\)\)")
_SELECT = re.compile(
    r"SELECT convert_from\(decode\('((?:[0-9a-f]{2})*)', 'hex'\), 'UTF8'\), \* FROM unnest\("
    r"'\{(-?\d+(?:,-?\d+)*)\}'::bigint\[\], '\{([0-9a-f]{32}(?:,[0-9a-f]{32})*)\}'::uuid\[\], "
    r"'\{(-?\d+(?:,-?\d+)*)\}'::bigint\[\]\)"
)


@given(
    st.lists(
        st.tuples(st.integers(0, 62), st.integers(0, 2**62), st.binary(min_size=32, max_size=32))
    )
)
def test_the_nodes_statement_holds_exactly_the_nodes(nodes: list[tuple[int, int, bytes]]) -> None:
    sql = _nodes_statement(nodes)
    if not nodes:
        assert sql == ""
        return
    head = "INSERT INTO audit_merkle_nodes (level, node_index, hash) VALUES "
    assert sql.startswith(head)
    assert sql.endswith("; ")
    values = sql[len(head) : -2]
    assert ", ".join(m.group(0) for m in _NODE.finditer(values)) == values
    assert [
        (int(m.group(1)), int(m.group(2)), bytes.fromhex(m.group(3)))
        for m in _NODE.finditer(values)
    ] == nodes


@given(
    st.lists(
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
)
def test_the_positions_statement_holds_exactly_the_positions(
    placed: list[tuple[int, uuid.UUID, SourcePosition]],
) -> None:
    sql = _positions_statement(placed)
    if not placed:
        assert sql == ""
        return
    head = "INSERT INTO audit_source_positions (source, global_position, event_id, position) "
    tail = " ON CONFLICT DO NOTHING; "
    assert sql.startswith(head)
    assert sql.endswith(tail)
    selects = sql[len(head) : -len(tail)]
    found = list(_SELECT.finditer(selects))
    assert " UNION ALL ".join(m.group(0) for m in found) == selects
    rows = [
        (
            int(position),
            uuid.UUID(event_id),
            SourcePosition(bytes.fromhex(m.group(1)).decode(), int(at)),
        )
        for m in found
        for at, event_id, position in zip(
            m.group(2).split(","), m.group(3).split(","), m.group(4).split(","), strict=True
        )
    ]
    # Grouped by store in the order each first appears, the order within a store kept.
    stores = list(dict.fromkeys(p.source for _, _, p in placed))
    assert rows == [item for store in stores for item in placed if item[2].source == store]
