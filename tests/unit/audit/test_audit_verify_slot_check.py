"""A verify slot's check that fails, however it fails, says the slot is lost (#12,
docs/audit.md "The API's verify"): a check that raised instead ended the watcher and left the
verify running unwatched."""

from __future__ import annotations

from typing import Any, cast

import asyncpg
import pytest

from branchline_audit.adapters.verify_slots import slot_lost


class _FailingCheck:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetchrow(self, *args: object) -> None:
        raise self.error


async def _lost(error: Exception) -> str | None:
    return await slot_lost(cast("asyncpg.Connection[Any]", _FailingCheck(error)), 0, 1234)


async def test_a_check_sent_between_the_servers_error_and_its_close_is_a_lost_connection() -> None:
    # What asyncpg raises for a query sent after an unasked FATAL error was read and before
    # the socket's close was (the protocol no longer idle).
    error = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) ...")
    why = await _lost(error)
    assert why is not None
    assert "connection was lost" in why
    assert "InternalClientError" in why


@pytest.mark.parametrize("error", [RuntimeError("unexpected"), ValueError("odd row")])
async def test_a_check_that_fails_otherwise_is_a_lost_slot(error: Exception) -> None:
    why = await _lost(error)
    assert why is not None
    assert "could not be checked" in why
    assert type(error).__name__ in why
