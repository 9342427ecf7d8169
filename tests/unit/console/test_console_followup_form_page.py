"""The followup console's form pages (#12): a refused request links back to the form it came
from filled in again, a field longer than the form takes left out and named in ``too_long``
(never its value): the work list's filters (its filter form's get, an action's ``f_*``
fields), the quality page's and the refusals page's search forms; a per-task form's fields
too long, named for its own error (``check_lengths``)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from branchline_followup.entrypoints.console.rm_pages import (
    QUALITY_FIELDS,
    REFUSAL_FIELDS,
    TASK_FIELDS,
    WORK_FIELDS,
    FormInvalid,
    check_lengths,
    form_page,
)
from branchline_followup.entrypoints.task_cursor import encode_cursor
from branchline_shared.console.refill import too_long_fields

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

LONG = "C" * 129


def parts(page: str | None) -> tuple[str, dict[str, list[str]]]:
    assert page is not None
    split = urlsplit(page)
    return split.path, parse_qs(split.query)


def test_the_work_lists_filter_form_names_a_too_long_filter_never_its_value() -> None:
    page = form_page("/console/", {"status": "overdue", "client_id": LONG, "assignee": "rm-7"})
    assert LONG not in (page or "")
    assert parts(page) == (
        "/console/",
        {"status": ["overdue"], "assignee": ["rm-7"], "too_long": ["client_id"]},
    )
    _, query = parts(form_page("/console/", {"kind": "k" * 65, "assignee": "a" * 129}))
    assert query == {"status": ["open"], "too_long": ["kind,assignee"]}


def test_an_actions_too_long_filter_is_named_its_cursor_kept() -> None:
    cursor = encode_cursor("2026-12-01T10:00:00+00:00", "00000000-0000-0000-0000-000000000001")
    fields = {"f_status": "open", "f_client_id": LONG, "f_cursor": cursor, "note": "n" * 2001}
    path, query = parts(form_page("/console/tasks/x/complete", fields))
    assert path == "/console/"
    assert query == {"status": ["open"], "cursor": [cursor], "too_long": ["client_id"]}


@pytest.mark.parametrize(
    ("path", "page", "fields", "expected"),
    [
        (
            "/console/quality",
            "/console/quality",
            {"branch_id": "BR-1", "rm_id": LONG, "from": "2026-12-01"},
            {"branch_id": ["BR-1"], "from": ["2026-12-01"], "too_long": ["rm_id"]},
        ),
        (
            "/console/quality.csv",
            "/console/quality",
            {"to": "2026-12-01x", "branch_id": LONG},
            {"too_long": ["branch_id,to"]},
        ),
        (
            "/console/refusals",
            "/console/refusals",
            {"rule": "D-1234567", "branch_id": LONG},
            {"too_long": ["rule,branch_id"]},
        ),
    ],
)
def test_the_supervisors_search_forms_name_a_too_long_field(
    path: str, page: str, fields: dict[str, str], expected: dict[str, list[str]]
) -> None:
    found = form_page(path, fields)
    assert LONG not in (found or "")
    assert parts(found) == (page, expected)


def test_a_path_that_is_no_forms_has_no_form_page_and_unknown_names_are_ignored() -> None:
    assert form_page("/console/team", {"x": LONG}) is None
    assert form_page("/console/quality", {}) == "/console/quality"
    assert too_long_fields("client_id,cursor,x", WORK_FIELDS) == {"client_id"}
    assert too_long_fields("rm_id,rule", QUALITY_FIELDS) == {"rm_id"}
    assert too_long_fields(None, REFUSAL_FIELDS) == frozenset()


def test_a_per_task_forms_fields_are_refused_by_name_when_too_long_whitespace_aside() -> None:
    check_lengths(note=f"  {'n' * TASK_FIELDS['note']}\n", assignee="a" * 128, reason="")
    with pytest.raises(FormInvalid) as refused:
        check_lengths(note="n" * 2001, assignee="rm-8", reason="r" * 201)
    assert refused.value.too_long == {"note", "reason"}
    assert "n" * 2001 not in str(refused.value)
    with pytest.raises(FormInvalid) as refused:
        check_lengths(assignee="a" * 129)
    assert refused.value.too_long == {"assignee"}
