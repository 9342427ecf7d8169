"""Which tables a unit of work really writes, for the tests that hold a consumer's probe's
table list to its write paths (#12, Round 32: a table a unit writes and the probe does not
lock reopens the gap the probe closed).

A statement-level trigger on every table of the database records the table of each
``INSERT``, ``UPDATE``, ``DELETE``, ``COPY`` or ``TRUNCATE`` statement, even one that changes
no row (it took the table's write lock all the same, which is what a ``SHARE`` lock elsewhere
makes wait), and a statement a row trigger runs. ``ENABLE ALWAYS``: it fires under
``session_replication_role = replica`` too. The record is kept in a schema of its own, by
the table's oid, written as its owner (``SECURITY DEFINER``: the service's own role may
write nothing else there). For a test's own scratch database only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

RECORD_SCHEMA = "written_by_test"

_SETUP = f"""
CREATE SCHEMA {RECORD_SCHEMA};
CREATE TABLE {RECORD_SCHEMA}.written (relid oid NOT NULL);
CREATE FUNCTION {RECORD_SCHEMA}.note() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO {RECORD_SCHEMA}.written (relid) VALUES (TG_RELID);
    RETURN NULL;
END $$;
"""

_TABLES = (
    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname <> $1 "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
    "ORDER BY 1"
)


async def record_writes(conn: asyncpg.Connection[Any]) -> int:
    """Record from now on every write statement on a table of the database, partitions
    included, in every schema but the system's (``conn``: a superuser); how many tables are
    watched."""
    await conn.execute(_SETUP)
    tables = [r[0] for r in await conn.fetch(_TABLES, RECORD_SCHEMA)]
    for table in tables:  # quoted by format(%I) above
        await conn.execute(
            f"CREATE TRIGGER written_by_test AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {RECORD_SCHEMA}.note()"
        )
        await conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER written_by_test")
    return len(tables)


async def written(conn: asyncpg.Connection[Any]) -> dict[int, str]:
    """The tables written since :func:`record_writes`: oid → schema-qualified name."""
    rows = await conn.fetch(
        "SELECT DISTINCT w.relid, format('%I.%I', n.nspname, c.relname) AS name "
        f"FROM {RECORD_SCHEMA}.written w JOIN pg_class c ON c.oid = w.relid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace"
    )
    return {int(r["relid"]): r["name"] for r in rows}


async def resolved(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], names: Iterable[str]
) -> dict[str, int | None]:
    """Each of ``names`` found as the service finds it (``conn``: one of its own, with its
    ``search_path``): its table's oid, None when there is none."""
    rows = await conn.fetch(
        "SELECT t, to_regclass(t)::oid AS relid FROM unnest($1::text[]) WITH ORDINALITY u(t, n) "
        "ORDER BY n",
        list(names),
    )
    return {r["t"]: None if r["relid"] is None else int(r["relid"]) for r in rows}


def unwritten_report(label: str, listed: dict[str, int | None], seen: dict[int, str]) -> str:
    """The listed tables the run never wrote (not a failure: some paths are rare)."""
    never = sorted(t for t, relid in listed.items() if relid not in seen)
    return f"{label}: listed, never written by this run: {never or 'none'}"


def assert_all_listed(
    label: str, listed: dict[str, int | None], seen: dict[int, str], witness: str
) -> str:
    """Every table the run wrote is in the probe's list (by oid), each listed one exists, and
    ``witness`` (a table every run writes) was seen: the record works. Returns the report of
    the listed tables never written, for the test to print."""
    assert witness in seen.values()  # the record works
    assert [t for t, relid in listed.items() if relid is None] == []  # each listed one exists
    unlisted = sorted(name for relid, name in seen.items() if relid not in listed.values())
    assert unlisted == [], f"written by the run, not locked by the probe of {label}"
    return unwritten_report(label, listed, seen)
