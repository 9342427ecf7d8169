"""The pieces read statements are built from: bound values numbered in order, byte ranges."""

from __future__ import annotations

import pytest

from branchline_shared.postgres.statements import Placeholders, prefix_range

pytestmark = pytest.mark.unit


def test_each_value_becomes_the_next_placeholder() -> None:
    param = Placeholders(4)
    assert [param("a"), param(2), param(None)] == ["$4", "$5", "$6"]
    assert param.values == ["a", 2, None]


def test_a_prefix_range_holds_exactly_the_strings_with_the_prefix() -> None:
    low, high = prefix_range("audit.")
    assert (low, high) == ("audit.", "audit/")
    for inside in ("audit.", "audit.read", "audit.~\u4e2d"):
        assert low.encode() <= inside.encode() < high.encode()
    for outside in ("audit", "audit/", "auditx", "audiu"):
        assert not low.encode() <= outside.encode() < high.encode()
    for bad in ("", "product-\u4e2d", "x\x7f", "x\n"):
        with pytest.raises(ValueError, match="printable ASCII"):
            prefix_range(bad)
