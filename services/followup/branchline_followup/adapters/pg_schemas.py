"""Where the read models live, and the PostgreSQL locks around them.

The read models are the tables of the schema ``fu_read``; every query names tables without a
schema and finds them through the connection's ``search_path``. A rebuild clones them into a
fresh schema, fills it, and swaps it in with two renames in one transaction (blue/green).

Locks (advisory, per database):

- the *swap lock*: every transaction that writes the live read models holds it shared; the
  swap holds it exclusively, so no write can land in a schema that is being retired;
- a *client lock* per client (two-key form, one class per schema being written): every change
  of a client's tasks is serialised, whoever makes it (worker, timer runner, API);
- a *product lock* per product (two-key form, one class per schema being written): a unit applying
  a sale or a rating of the product holds it from before it reads the product's ratings or
  re-rates its holdings (D-15, #12), so a sale and a re-rating applied at once by two workers
  serialise instead of each missing the other's uncommitted rows. Taken before any client
  lock (a re-rating locks its holders after it), in the order of their keys.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from branchline_shared.postgres.pool import PgConnection

LIVE_SCHEMA = "fu_read"
REBUILD_PREFIX = "fu_rebuild_"
RETIRED_PREFIX = "fu_retired_"
SWAP_LOCK_KEY = 0x66755F73776170  # "fu_swap"
LIVE_CLIENT_LOCK_CLASS = 0x6675  # "fu"
REBUILD_CLIENT_LOCK_CLASS = 0x6662  # "fb"
LIVE_PRODUCT_LOCK_CLASS = 0x6670  # "fp"
REBUILD_PRODUCT_LOCK_CLASS = 0x6671  # "fq": a unit writing a rebuild's schema (none takes it yet)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def checked_schema(name: str) -> str:
    """A schema name safe to splice into DDL (identifiers cannot be bind parameters)."""
    if not _SCHEMA_NAME.match(name):
        raise ValueError(f"not a plain schema name: {name!r}")
    return name


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` whose connections resolve table names in ``schema`` first, then ``public``
    (asyncpg passes unknown DSN query parameters as server settings)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    path = "public" if schema == "public" else f"{checked_schema(schema)},public"
    query.append(("search_path", path))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def hold_swap_lock_shared(conn: PgConnection, *, generic_plans: bool = False) -> None:
    """``generic_plans``: the rest of the transaction runs prepared statements on their
    generic plans (``plan_cache_mode``, local to the transaction: nothing outlives it), in
    the same round trip."""
    if generic_plans:
        await conn.execute(_SWAP_LOCK_GENERIC, SWAP_LOCK_KEY)
    else:
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", SWAP_LOCK_KEY)


_SWAP_LOCK_GENERIC = (
    "SELECT pg_advisory_xact_lock_shared($1), "
    "set_config('plan_cache_mode', 'force_generic_plan', true)"
)

BEGIN_HOLDING_SWAP_LOCK = (
    f"BEGIN; SELECT pg_advisory_xact_lock_shared({SWAP_LOCK_KEY}), "
    "set_config('plan_cache_mode', 'force_generic_plan', true)"
)
"""A transaction begun with the swap lock held shared and its statements on their generic
plans (:func:`hold_swap_lock_shared` with ``generic_plans``) in ONE simple query (#12: ``BEGIN``
was a round trip of its own per unit). The key is a constant of this module, not a value sent."""


UNIT_WRITTEN_TABLES = (
    # (table, a column it is written through): every table a worker's unit can write, found
    # by name through the worker's search path (the live read models, then ``public``'s
    # event store, which a unit writes when it creates a task). ``fu_applied_events`` is
    # written by every unit, the rest by some events only: the facts, the journal, tasks and
    # timers (and a late event's replay, which deletes a client's rows from most of them),
    # the client page, the service loop, suitability, staff and personal data; ``fu_refusals``
    # through the trigger on ``fu_clients`` (console migration 004) and a refusal.
    ("fu_applied_events", "event_id"),
    ("fu_clients", "client_id"),
    ("fu_client_events", "event_id"),
    ("fu_tasks", "id"),
    ("fu_timers", "task_id"),
    ("fu_client_timeline", "client_id"),
    ("fu_client_consents", "client_id"),
    ("fu_client_assessments", "client_id"),
    ("fu_visits", "client_id"),
    ("fu_surveys", "event_id"),
    ("fu_complaints", "complaint_id"),
    ("fu_corrective_actions", "action_id"),
    ("fu_renegotiations", "event_id"),
    ("fu_business_events", "event_id"),
    ("fu_holdings", "client_id"),
    ("fu_product_ratings", "product_id"),
    ("fu_staff", "staff_id"),
    ("fu_staff_training", "event_id"),
    ("fu_personal_values", "client_id"),
    ("fu_privacy", "client_id"),
    ("fu_staff_privacy", "staff_id"),
    ("fu_staff_gift_clients", "staff_id"),
    ("fu_refusals", "event_id"),
    ("es_streams", "stream_id"),
    ("es_events", "event_id"),
    ("es_outbox", "event_id"),
)


def write_locks_then(tables: Sequence[tuple[str, str]], statement: str) -> str:
    """``statement`` preceded, in the same statement, by the write lock of each of ``tables``:
    one data-modifying CTE per table inserting no row (``ROW EXCLUSIVE``, what a unit's
    ``INSERT``, ``UPDATE``, ``DELETE`` or ``COPY`` takes; no row trigger fires and nothing is
    written). Identifiers only, fixed by the caller (no value in the SQL text)."""
    ctes = ", ".join(
        f"w{n} AS (INSERT INTO {checked_schema(t)} ({checked_schema(c)}) "  # noqa: S608 - fixed identifiers
        f"SELECT {c} FROM {t} WHERE false RETURNING 1)"
        for n, (t, c) in enumerate(tables)
    )
    return f"WITH {ctes} {statement}"


SWAP_LOCK_PROBE = (
    write_locks_then(UNIT_WRITTEN_TABLES, "SELECT pg_advisory_xact_lock_shared($1)"),
    SWAP_LOCK_KEY,
)
"""The worker's probe (:class:`~branchline_shared.postgres.pool.PromptProbe`), in one
statement: the swap lock every unit takes first, held shared for the statement only, and the
write lock of every table a unit can write (:data:`UNIT_WRITTEN_TABLES`, :func:`write_locks_then`).
A swap (a rebuild) holding the swap lock, or another transaction holding a lock on one of
those tables which a unit's write waits for (``SHARE``: a plain ``CREATE INDEX``, ``LOCK
TABLE ... IN SHARE MODE``; stronger: ``ALTER TABLE``, ``VACUUM FULL``), makes the units that
write it wait, so the probe is not answered promptly either (#12, Round 32): a lone event
that creates a task is not dead-lettered while ``fu_tasks`` is locked. The table locks are
taken when the statement is parsed, in the order above, before the swap lock; they are all
``ROW EXCLUSIVE``, which no unit's lock conflicts with, and a swap renames schemas and locks
no table, so the probe cannot deadlock with either (docs/performance.md)."""


async def hold_swap_lock_exclusive(conn: PgConnection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SWAP_LOCK_KEY)


async def lock_client(conn: PgConnection, client_id: str, lock_class: int) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", lock_class, client_id)


async def lock_clients(conn: PgConnection, client_ids: Sequence[str], lock_class: int) -> None:
    """:func:`lock_client` for each, in one statement, in the order given (#12)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(c)) "
        "FROM unnest($2::text[]) WITH ORDINALITY AS t(c, n) ORDER BY n",
        lock_class,
        list(client_ids),
    )


async def lock_products(conn: PgConnection, product_ids: Sequence[str], lock_class: int) -> None:
    """The product locks of ``product_ids`` in one statement, in the order of their keys (not
    of the ids: two ids of one hash would otherwise be taken in two orders by two units, which
    could then deadlock), each key once."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, k) "
        "FROM (SELECT DISTINCT hashtext(p) AS k FROM unnest($2::text[]) AS t(p)) AS keys "
        "ORDER BY k",
        lock_class,
        list(product_ids),
    )


async def try_lock_products(
    conn: PgConnection, product_ids: Sequence[str], lock_class: int
) -> bool:
    """:func:`lock_products` without waiting (D-15, #12): whether every one was granted (each
    key tried, in their order; those granted are held until the transaction ends even when
    another is not: the caller then gives the unit up)."""
    return bool(
        await conn.fetchval(
            "SELECT bool_and(pg_try_advisory_xact_lock($1, k)) "
            "FROM (SELECT DISTINCT hashtext(p) AS k FROM unnest($2::text[]) AS t(p) "
            "ORDER BY k) AS keys",
            lock_class,
            list(product_ids),
        )
    )


async def try_lock_client(conn: PgConnection, client_id: str, lock_class: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", lock_class, client_id
        )
    )


async def read_model_tables(conn: PgConnection, schema: str = LIVE_SCHEMA) -> list[str]:
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
    )
    return [r["tablename"] for r in rows]


async def clone_schema(
    conn: PgConnection, target: str, *, deferred: frozenset[str] = frozenset()
) -> None:
    """Create ``target`` with empty copies of every live read-model table (columns, defaults,
    constraints, indexes, under the live names), so a rebuild always has exactly the live
    structure; but for the indexes named in ``deferred``, built later by
    :func:`build_missing_indexes` (a bulk load's: #12). A unique index or one behind a
    constraint is never deferred (``ON CONFLICT`` and the keys' checks need it)."""
    target = checked_schema(target)
    await conn.execute(f"CREATE SCHEMA {target}")
    for table in await read_model_tables(conn):
        table = checked_schema(table)
        # LIKE ... INCLUDING INDEXES names its indexes after their columns, not as the
        # migrations did: a later migration's DROP INDEX or IF NOT EXISTS would miss them
        await conn.execute(
            f"CREATE TABLE {target}.{table} "
            f"(LIKE {LIVE_SCHEMA}.{table} INCLUDING ALL EXCLUDING INDEXES)"
        )
    for index in await _live_indexes(conn):
        if index.name not in deferred or index.kept_while_loading:
            await conn.execute(index.statement_for(target))
    await _copy_statistics_targets(conn, target)
    await _copy_triggers(conn, target)


async def build_missing_indexes(conn: PgConnection, target: str) -> list[str]:
    """Build in ``target`` every live index it lacks (by name): those :func:`clone_schema`
    deferred, and any a migration added to the live tables since; the names built."""
    target = checked_schema(target)
    present = {
        r[0]
        for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", target)
    }
    built = []
    for index in await _live_indexes(conn):
        if index.name not in present:
            await conn.execute(index.statement_for(target))
            built.append(index.name)
    return built


@dataclasses.dataclass(frozen=True)
class _Index:
    table: str
    name: str
    definition: str
    """``pg_get_indexdef``: the table named with its schema."""
    constraint: str | None
    """``pg_get_constraintdef`` of the key, unique or exclusion constraint the index backs."""
    unique: bool

    @property
    def kept_while_loading(self) -> bool:
        return self.unique or self.constraint is not None

    def statement_for(self, target: str) -> str:
        table = checked_schema(self.table)
        if self.constraint is not None:
            return (
                f"ALTER TABLE {target}.{table} ADD CONSTRAINT "
                f"{checked_schema(self.name)} {self.constraint}"
            )
        on = re.compile(rf" ON (ONLY )?{LIVE_SCHEMA}\.{re.escape(table)} ")
        statement, count = on.subn(rf" ON \g<1>{target}.{table} ", self.definition, count=1)
        if count != 1:
            raise ValueError(f"cannot copy the index {self.name}: {self.definition!r}")
        return statement


_INDEXES = """
SELECT c.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS definition,
       pg_get_constraintdef(k.oid) AS constraint_definition, x.indisunique AS is_unique
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint k
       ON k.conindid = i.oid AND k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x')
WHERE n.nspname = $1 AND c.relkind = 'r'
ORDER BY c.relname, k.oid IS NULL, i.relname
"""


async def _live_indexes(conn: PgConnection) -> list[_Index]:
    return [
        _Index(
            r["table_name"],
            r["index_name"],
            r["definition"],
            r["constraint_definition"],
            r["is_unique"],
        )
        for r in await conn.fetch(_INDEXES, LIVE_SCHEMA)
    ]


_TRIGGERS = """
SELECT c.relname, pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname
"""


async def _copy_triggers(conn: PgConnection, target: str) -> None:
    """LIKE ... INCLUDING ALL copies no trigger: the copies get the live tables' (console
    migration 004: the client's RM kept on its refusals, #12). Their functions live in
    ``public`` and write the schema of the row that fired them, so a copy's triggers write
    the copy's tables."""
    for table, definition in await conn.fetch(_TRIGGERS, LIVE_SCHEMA):
        on = re.compile(rf" ON (?:{LIVE_SCHEMA}\.)?{re.escape(table)} ")
        copied, count = on.subn(f" ON {target}.{checked_schema(table)} ", definition, count=1)
        if count != 1:
            raise ValueError(f"cannot copy the trigger of {table}: {definition!r}")
        await conn.execute(copied)


# LIKE ... INCLUDING ALL copies no column's statistics target: without this, a rebuilt
# journal's envelope would be analysed again (followup migration 012, #12). `>= 0`: a target
# that was set (unset is NULL since PostgreSQL 17, -1 before).
_STATISTICS_TARGETS = """
SELECT format('ALTER TABLE %I.%I ALTER COLUMN %I SET STATISTICS %s',
              $2::text, c.relname, a.attname, a.attstattarget)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attstattarget >= 0
ORDER BY c.relname, a.attnum
"""


async def _copy_statistics_targets(conn: PgConnection, target: str) -> None:
    for statement in await conn.fetch(_STATISTICS_TARGETS, LIVE_SCHEMA, target):
        await conn.execute(statement[0])


async def swap_in(conn: PgConnection, rebuilt: str, retired: str) -> None:
    """Within the caller's transaction (holding the swap lock): ``rebuilt`` becomes the live
    schema, the old one is kept as ``retired``."""
    rebuilt, retired = checked_schema(rebuilt), checked_schema(retired)
    await conn.execute(f"ALTER SCHEMA {LIVE_SCHEMA} RENAME TO {retired}")
    await conn.execute(f"ALTER SCHEMA {rebuilt} RENAME TO {LIVE_SCHEMA}")


async def drop_schema(conn: PgConnection, schema: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {checked_schema(schema)} CASCADE")
