"""The task list's keyset cursor, shared by ``GET /v1/followups`` and the console's work
list (#12): the next page's key, ``(due_at, id)``, as opaque text for a query string."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

import orjson


class CursorInvalid(ValueError):
    """Text that is not a cursor this service made (malformed or forged)."""


def encode_cursor(due_at: datetime | str, task_id: uuid.UUID) -> str:
    """The next page's key: a due_at (an instant, or ``infinity`` / ``-infinity``, the key of
    a skipped row a read stopped at) and a task id."""
    moment = due_at if isinstance(due_at, str) else due_at.isoformat()
    raw = orjson.dumps([moment, str(task_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | str, uuid.UUID]:
    """The key :func:`encode_cursor` wrote, or :class:`CursorInvalid`. A key only says where
    a page starts: the caller's scope filter is applied to every page, so a forged key can
    move within the scope, never widen it."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        due_at, task_id = orjson.loads(raw)
        if due_at in ("infinity", "-infinity"):  # past a skipped row's key (queries.cursor_key)
            return due_at, uuid.UUID(task_id)
        moment = datetime.fromisoformat(due_at)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, uuid.UUID(task_id)
    except (ValueError, TypeError, AttributeError, binascii.Error, orjson.JSONDecodeError):
        raise CursorInvalid("not a cursor this service returned") from None
