"""Plans of the statements a read runs, as PostgreSQL makes them blind to their values (#12).

asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic plan.
A read is run through :class:`Recording`, which keeps the SQL of each statement, and
:func:`generic_plan` explains each one under ``plan_cache_mode = force_generic_plan``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class Recording:
    """A pool (or one of its connections) that records the SQL of every statement run on it
    and otherwise is the pool."""

    def __init__(self, target: Any, statements: list[str]) -> None:
        self._target = target
        self.statements = statements

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return await getattr(self._target, method)(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._run("fetch", sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, *args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Recording]:
        async with self._target.acquire() as conn:
            yield Recording(conn, self.statements)


async def generic_plan(pool: Any, statement: str) -> str:
    """The statement's generic plan (any values do: NULLs are given, nothing is run)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        arity = len((await conn.prepare(statement)).get_parameters())
        await conn.execute(f"PREPARE read_probe AS {statement}")
        try:
            values = f"({', '.join(['NULL'] * arity)})" if arity else ""
            rows = await conn.fetch(f"EXPLAIN EXECUTE read_probe{values}")
        finally:
            await conn.execute("DEALLOCATE read_probe")
    return "\n".join(r[0] for r in rows)


_SCAN = re.compile(r"(Seq Scan|Index Scan|Index Only Scan)(?: Backward)?(?: using \w+)? on (\w+)")


def whole_reads(plan: str) -> set[str]:
    """The tables the plan reads whole: by a sequential scan, or by walking an index with no
    condition on it while filtering what it finds (a walk for an ORDER BY ... LIMIT that
    looks for rare rows reads the table to its end)."""
    found: set[str] = set()
    nodes: list[tuple[str, str, list[str]]] = []
    for line in plan.splitlines():
        scan = _SCAN.search(line)
        if scan:
            nodes.append((scan.group(1), scan.group(2), []))
        elif "->" in line:
            nodes.append(("", "", []))
        elif nodes:
            nodes[-1][2].append(line.strip())
    for kind, table, details in nodes:
        if kind == "Seq Scan" or (
            kind
            and not any(d.startswith("Index Cond:") for d in details)
            and any(d.startswith("Filter:") for d in details)
        ):
            found.add(table)
    return found


async def whole_reading_statements(
    pool: Any, statements: list[str], *, small: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Each statement whose generic plan reads a table (not one of ``small``) whole
    (:func:`whole_reads`), with its plan."""
    found: dict[str, str] = {}
    for statement in dict.fromkeys(statements):
        plan = await generic_plan(pool, statement)
        if whole_reads(plan) - small:
            found[statement] = plan
    return found
