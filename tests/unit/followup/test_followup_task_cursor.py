"""The task list's cursor (#12): a next-page key past rows skipped as unreadable can be an
instant Python cannot hold as a datetime (``infinity``), and a cursor carries it back."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from branchline_followup.adapters.queries import cursor_key
from branchline_followup.entrypoints.http_followups import decode_cursor, encode_cursor
from branchline_shared.http.problems import Problem

TASK = uuid.UUID("00000000-0000-4000-8000-000000000007")


@pytest.mark.parametrize(
    "due",
    [datetime(2026, 6, 1, 8, 30, tzinfo=UTC), "infinity", "-infinity"],
    ids=["an instant", "infinity", "minus infinity"],
)
def test_a_cursor_carries_its_key_back(due: datetime | str) -> None:
    assert decode_cursor(encode_cursor(due, TASK)) == (due, TASK)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("2026-06-01 08:30:00+00", datetime(2026, 6, 1, 8, 30, tzinfo=UTC)),
        ("2026-06-01 08:30:00.25+02", datetime.fromisoformat("2026-06-01T08:30:00.25+02:00")),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
        ("10000-01-01 00:00:00+00", None),
        ("0044-03-15 00:00:00+00 BC", None),
    ],
    ids=["utc", "an offset", "infinity", "minus infinity", "year 10000", "BC"],
)
def test_a_stored_due_ats_text_as_a_cursors_key(text: str, key: datetime | str | None) -> None:
    """PostgreSQL's text of a due_at (``key_due_at``): an aware instant or an infinity can be
    a cursor's key; another out-of-range instant cannot (the read goes on past it)."""
    assert cursor_key(text) == key


def test_a_cursor_of_another_word_is_refused() -> None:
    with pytest.raises(Problem):
        decode_cursor(encode_cursor("tomorrow", TASK))


@pytest.mark.parametrize(
    "raw",
    [
        b'["2026-03-01T00:00:00+00:00",7]',
        b'["2026-03-01T00:00:00+00:00",[1]]',
        b'["infinity",true]',
    ],
    ids=["a number for the task id", "a list for the task id", "a boolean for the task id"],
)
def test_a_forged_cursor_of_other_json_is_refused_not_a_5xx(raw: bytes) -> None:
    """A cursor is the caller's text: a task id that is JSON but not text is the field's 422
    (#12: it raised AttributeError, a 500 of ``GET /v1/followups``, and of the console)."""
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(Problem):
        decode_cursor(cursor)
