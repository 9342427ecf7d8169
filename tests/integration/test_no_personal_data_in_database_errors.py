"""A database error told in a log line, a logged traceback or a dead-letter reason names its
SQLSTATE and the objects it concerns, never the value it refused (D-04): PostgreSQL quotes
that value in its message and its DETAIL, and asyncpg in its own encoding errors.

The errors are PostgreSQL's own, raised by a real server."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from branchline_shared.logging_setup import JsonLineFormatter, describe_error

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PLANTED = "Zhang San 13800138000"
"""Stands in for a client's name and phone number."""


@pytest.fixture
async def conn(postgres_admin_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(postgres_admin_url)
    await connection.execute(
        "CREATE TEMP TABLE held (id int PRIMARY KEY, name text UNIQUE,"
        " note varchar(16) CHECK (note <> 'forbidden'), at timestamptz)"
    )
    await connection.execute("INSERT INTO held VALUES (1, $1, 'a', now())", PLANTED)
    yield connection
    await connection.close()


async def refusal(conn: asyncpg.Connection[Any], sql: str, *args: object) -> Exception:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - each case's own type is asserted
        await conn.execute(sql, *args)
    assert isinstance(raised.value, asyncpg.PostgresError)
    return raised.value


CASES = [
    # (statement, arguments, what the description must name)
    ("SELECT $1::text::uuid", (PLANTED,), "SQLSTATE 22P02"),  # quoted in the message
    ("INSERT INTO held VALUES (2, $1, 'a', now())", (PLANTED,), "constraint held_name_key"),
    ("INSERT INTO held VALUES (3, 'b', $1, now())", ("forbidden",), "constraint held_note_check"),
    ("SELECT $1::int", (PLANTED,), "argument $1"),  # asyncpg's encoding error
    ("SELECT $1::timestamptz", (PLANTED,), "argument $1"),
    ("SELECT $1::text::date", (PLANTED,), "SQLSTATE 22"),
    ("SELECT $1::text::int", ("13800138000",), "SQLSTATE 22003"),  # quoted before any colon
]


@pytest.mark.parametrize(("sql", "args", "named"), CASES)
async def test_a_database_error_is_told_without_the_value_it_refused(
    conn: asyncpg.Connection[Any], sql: str, args: tuple[object, ...], named: str
) -> None:
    error = await refusal(conn, sql, *args)
    refused = str(args[0])
    assert refused in repr(error) + str(error.detail)  # what a description could have leaked
    described = describe_error(error)
    assert refused not in described
    assert "Zhang" not in described
    assert named in described
    assert "DETAIL" not in described
    assert described.startswith(type(error).__name__ + ": ")


async def test_a_logged_traceback_of_a_database_error_carries_no_value(
    conn: asyncpg.Connection[Any],
) -> None:
    try:
        try:
            await conn.execute("SELECT $1::text::uuid", PLANTED)
        except asyncpg.PostgresError as exc:
            raise RuntimeError("projection failed") from exc
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonLineFormatter("test").format(record)
    assert "Zhang" not in line
    assert "InvalidTextRepresentationError" in line
    assert "22P02" in line
    assert "projection failed" in line
