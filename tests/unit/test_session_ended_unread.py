"""A connection whose session the server ended, its error read and its close not yet: what
asyncpg raises for it is a lost connection wherever a lost connection is expected (#12,
postgres/faults.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import pytest

from branchline_shared.postgres.faults import session_ended_unread
from branchline_shared.postgres.pool import is_reachable

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

ENDED_UNREAD = "cannot switch to state 12; another operation (2) is in progress"


class _Connection:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetchval(self, *args: object, **kwargs: object) -> Any:
        raise self.error


class _Pool:
    def __init__(self, error: Exception) -> None:
        self.error = error

    @contextlib.asynccontextmanager
    async def acquire(self, **kwargs: object) -> AsyncIterator[_Connection]:
        yield _Connection(self.error)


@pytest.mark.parametrize(
    ("message", "ended"),
    [
        (ENDED_UNREAD, True),
        ("cannot switch to state 15; another operation (2) is in progress", True),
        ("cannot switch to state 12; another operation (11) is in progress", False),
        ('cannot switch to "idle" state; protocol is in the "failed" state', False),
        ("unknown error in protocol implementation", False),
    ],
)
def test_only_the_protocol_left_waiting_for_an_unasked_errors_end_is_matched(
    message: str, ended: bool
) -> None:
    assert session_ended_unread(asyncpg.InternalClientError(message)) is ended
    assert not session_ended_unread(asyncpg.InterfaceError(message))  # that class only


async def test_the_readiness_probe_finds_such_a_connection_unreachable() -> None:
    pool = cast("asyncpg.Pool[Any]", _Pool(asyncpg.InternalClientError(ENDED_UNREAD)))
    assert await is_reachable(pool) is False


async def test_the_readiness_probe_still_raises_asyncpgs_own_bug() -> None:
    error = asyncpg.InternalClientError("unknown error in protocol implementation")
    with pytest.raises(asyncpg.InternalClientError):
        await is_reachable(cast("asyncpg.Pool[Any]", _Pool(error)))
