"""The read side's row guard (issue 9): a bad row is skipped, counted and logged without any
of its values; the others are decoded."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from branchline_followup.domain import FollowupTask
from branchline_shared.postgres.row_guard import (
    IDS_LOGGED,
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
    problems = [" ".join(r.__dict__.get("problems", {})) for r in caplog.records]
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


def test_a_reads_skipped_rows_are_one_warning_naming_their_count_ids_and_problems(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """#12: one warning per read (a statement's rows), not one per row: it names the query,
    how many rows were skipped, each problem's count and the first IDS_LOGGED ids (the key
    column the caller names; no other value); the counter still counts every row. Before,
    30 skipped rows were 30 warnings."""
    good = [{"id": f"ok-{n}", "score": str(n), UNREADABLE: False} for n in range(5)]
    bad = [{"id": f"bad-{n}", "score": "Zhang San", UNREADABLE: False} for n in range(25)]
    flagged = [{"id": f"flag-{n}", "score": "1", UNREADABLE: True} for n in range(5)]
    before = _count("unit.one")
    with caplog.at_level(logging.WARNING):
        decoded = decode_rows(
            [*good, *bad, *flagged], lambda r: int(r["score"]), query="unit.one", key="id"
        )
    assert decoded == list(range(5))
    assert _count("unit.one") == before + 30
    (warning,) = caplog.records
    fields = warning.__dict__
    assert (fields["query"], fields["skipped"]) == ("unit.one", 30)
    assert fields["ids"] == [f"bad-{n}" for n in range(IDS_LOGGED)]
    assert fields["problems"] == {"ValueError": 25, "an instant outside the representable range": 5}
    assert "Zhang" not in f"{warning.getMessage()} {fields}"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert readable(flagged, query="unit.one") == []
        assert decode_rows(good, lambda r: int(r["score"]), query="unit.one") == list(range(5))
    (warning,) = caplog.records  # one for the flagged read, none for a read that skipped none
    assert (warning.__dict__["skipped"], warning.__dict__["ids"]) == (5, [])
