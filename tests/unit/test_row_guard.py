"""The read side's row guard (issue 9): a bad row is skipped, counted and logged without any
of its values; the others are decoded."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from branchline_followup.domain import FollowupTask
from branchline_shared.postgres.row_guard import (
    UNREADABLE,
    UNREADABLE_ROWS,
    decode_rows,
    readable,
    select_list,
)

pytestmark = pytest.mark.unit


def _count(query: str) -> float:
    return UNREADABLE_ROWS.labels(query=query)._value.get()


def test_a_row_that_does_not_decode_is_skipped_counted_and_logged_without_its_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows: list[dict[str, Any]] = [
        {"name": "ok", "score": "1"},
        {"name": "Zhang San 13800138000", "score": "not a number"},
        {"name": "ok too", "score": "2"},
    ]
    before = _count("unit.decode")
    with caplog.at_level(logging.WARNING):
        decoded = decode_rows(rows, lambda r: (r["name"], int(r["score"])), query="unit.decode")
    assert decoded == [("ok", 1), ("ok too", 2)]
    assert _count("unit.decode") == before + 1
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "unit.decode" in logged
    assert "Zhang" not in logged
    assert "13800138000" not in logged


def test_a_validation_error_is_logged_by_field_name_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert decode_rows([{"kind": "Zhang San"}], FollowupTask.model_validate, query="u.v") == []
    problems = [r.__dict__.get("problem", "") for r in caplog.records]
    assert any("kind" in p for p in problems)
    assert not any("Zhang" in p for p in problems)


def test_flagged_rows_are_dropped_and_the_flag_removed() -> None:
    before = _count("unit.flag")
    rows = [{"at": 1, UNREADABLE: False}, {"at": None, UNREADABLE: True}]
    assert readable(rows, query="unit.flag") == [{"at": 1}]
    assert decode_rows(rows, lambda r: r, query="unit.flag") == [{"at": 1}]
    assert _count("unit.flag") == before + 2


def test_the_select_list_guards_only_the_instants() -> None:
    sql = select_list(["id", "due_at"], instants={"due_at"})
    assert sql.startswith("id, CASE WHEN (due_at >= ")
    assert sql.endswith(f"AS {UNREADABLE}")
    assert select_list(["id"], instants=set()) == f"id, (false) AS {UNREADABLE}"
