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
_OPERATORS = (
    (" = ANY ", "eq"),
    (" IS NULL", "eq"),
    (" = ", "eq"),
    (" >= ", "lo"),
    (" > ", "lo"),
    (" <= ", "hi"),
    (" < ", "hi"),
    (" ~>=~ ", "lo"),
    (" ~>~ ", "lo"),
    (" ~<=~ ", "hi"),
    (" ~<~ ", "hi"),
)
"""The operators an ``Index Cond`` condition is read by, and what each does to its column
(pin it, bound it from below or from above); ``IS NOT NULL``, ``<>``, ``~~`` and any other
are not read: such a condition bounds nothing."""


def _unwrap(text: str) -> str:
    """``text`` without the parentheses around the whole of it."""
    text = text.strip()
    while text.startswith("(") and _closing(text, 0) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one at ``start`` (-1 if none)."""
    depth = 0
    quoted = False
    for i in range(start, len(text)):
        c = text[i]
        if c == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _top_level(text: str) -> list[int]:
    """The offsets of ``text`` outside any parenthesis or quoted string."""
    found, depth, quoted = [], 0, False
    for i, c in enumerate(text):
        if c == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0:
            found.append(i)
    return found


def _conjuncts(condition: str) -> list[str]:
    """The ``AND``-ed conditions of an ``Index Cond``, in the order printed."""
    text = _unwrap(condition)
    parts, last = [], 0
    for i in _top_level(text):
        if text.startswith(" AND ", i):
            parts.append(text[last:i])
            last = i + len(" AND ")
    parts.append(text[last:])
    return [_unwrap(p) for p in parts]


def _column(operand: str) -> str:
    """An ``Index Cond`` operand as the index column (or expression) it names: the first of
    a ``ROW(...)``, quotes and a table's alias left out."""
    operand = _unwrap(operand)
    if operand.startswith("ROW(") and operand.endswith(")"):
        inner = operand[4:-1]
        commas = [i for i in _top_level(inner) if inner[i] == ","]
        operand = _unwrap(inner[: commas[0]] if commas else inner)
    name = operand.replace('"', "")
    if re.fullmatch(r"\w+\.\w+", name):
        name = name.split(".", 1)[1]
    return name


def _bound(condition: str) -> tuple[str, str] | None:
    """``(column, eq|lo|hi)`` for one condition, or None if it cannot be read."""
    top = set(_top_level(condition))
    for i in sorted(top):
        for operator, effect in _OPERATORS:
            if condition.startswith(operator, i) and (
                operator != " IS NULL" or i + len(operator) == len(condition)
            ):
                left = condition[:i]
                if operator == " = " and condition.startswith(" = ANY ", i):
                    continue
                row = _unwrap(left).startswith("ROW(")
                if row and effect == "eq":
                    return None  # a row's equality: not met in an Index Cond; read as nothing
                return _column(left), effect
        if condition.startswith(" IS NOT NULL", i) or condition.startswith(" <> ", i):
            return None
    return None


def open_ended(details: list[str]) -> bool:
    """Whether an index walk with these detail lines (``Index Cond:``, ``Filter:``...) leaves
    the index's leading column open: no ``Index Cond`` at all, or one whose leading column is
    neither pinned by an equality (``=``, ``= ANY``, ``IS NULL``) nor bounded from both sides.

    PostgreSQL prints an ``Index Cond``'s conditions in the index's column order, so the
    leading column is the first condition's (one that leaves the leading column without any
    condition is not told apart). A row comparison ``ROW(a, b) > ROW(...)`` bounds ``a`` from
    below only; an expression an index is on (``COALESCE(arrived_at, started_at)``) counts as
    its column; a condition this cannot read (``~~``, ``IS NOT NULL``, ``<>``) bounds
    nothing."""
    conditions = [d[len("Index Cond:") :] for d in details if d.startswith("Index Cond:")]
    if not conditions:
        return True
    bounds: dict[str, set[str]] = {}
    leading: str | None = None
    for conjunct in _conjuncts(conditions[0]):
        bound = _bound(conjunct)
        if bound is None:
            if leading is None:
                return True  # the first condition, unread: the leading column is open
            continue
        column, effect = bound
        leading = column if leading is None else leading
        bounds.setdefault(column, set()).add(effect)
    held = bounds.get(leading or "", set())
    return "eq" not in held and not {"lo", "hi"} <= held


def whole_reads(plan: str) -> set[str]:
    """The tables the plan reads whole, or may: by a sequential scan, or by walking an index
    open at one end (:func:`open_ended`: no condition on its leading column, or one bounding
    it from one side only, e.g. a keyset page's ``ROW(due_at, id) > ROW($2, $3)``) while
    filtering what it finds. A walk for an ORDER BY ... LIMIT that looks for rare rows reads
    the table to its end; whether the ``Filter`` drops rare or common rows a generic plan
    does not know, so any ``Filter`` counts. Not flagged: a walk whose leading column is
    pinned by an equality (one client's rows) or bounded from both sides, whatever it
    filters; an open walk with no ``Filter`` (it stops at its ``LIMIT``); bitmap scans (no
    order, so no early stop to miss: a bitmap read is as big as its conditions say)."""
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
            kind and any(d.startswith("Filter:") for d in details) and open_ended(details)
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
