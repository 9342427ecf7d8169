"""A small ordered SQL migration runner.

Why not Alembic: the services use no ORM and talk SQL through asyncpg; a migration is a plain,
reviewable ``NNN_name.sql`` file shipped inside the service's package. The runner applies
the files in order, each in its own transaction, records name and checksum in
``schema_migrations``, refuses to run when an applied file has since been edited, and holds a
PostgreSQL advisory lock so several replicas starting at once migrate exactly once.

A file's first lines may hold directives (docs/operations.md, "Migrations"):

* ``-- branchline: no-transaction``: its statements run one by one outside a transaction, as
  ``CREATE INDEX CONCURRENTLY`` must, so building an index on a large table does not stop
  writes to it. Only idempotent index statements are allowed
  (``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS``, ``DROP INDEX CONCURRENTLY IF
  EXISTS``): a run interrupted half-way is finished by the next one, which first drops an
  index the interrupted build left INVALID. A ``DO`` block is allowed too (it runs atomically,
  in its own transaction), for what must find its objects first, e.g. followup 016 renaming
  indexes by definition; it must be harmless to run again, which its review checks. The
  runner joins a statement's lines, so such a block holds no ``--`` comment (refused).
* ``-- branchline: former-checksum <sha256>``: a checksum the file had when a deployed
  database recorded it, still accepted for that migration only; any other edit of an applied
  file is refused as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

from branchline_shared.postgres.pool import PgConnection, ensure_database

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6272616E63686C  # "branchl"
_LOCK_POLL_SECONDS = (0.05, 0.1, 0.2, 0.5)
"""Waits between tries of the runner's lock; the last repeats."""

_DIRECTIVE = re.compile(r"^-- branchline:(.*)$")
_NO_TRANSACTION = "no-transaction"
_FORMER = re.compile(r"^former-checksum ([0-9a-f]{64})$")
_CREATE_CONCURRENTLY = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+"
    r"(?P<index>[a-z_][a-z0-9_]*)\s+ON\s+(?:ONLY\s+)?"
    r"(?P<table>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)(?=[\s(])",
    re.IGNORECASE | re.DOTALL,
)
_DO_BLOCK = re.compile(r"^DO\s+\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$", re.IGNORECASE)
_DROP_CONCURRENTLY = re.compile(
    r"^DROP\s+INDEX\s+CONCURRENTLY\s+IF\s+EXISTS\s+"
    r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?$",
    re.IGNORECASE,
)


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Statement:
    """One statement of a no-transaction migration; ``index``/``table`` name what a
    ``CREATE INDEX CONCURRENTLY`` builds (``None`` for a drop or a ``DO`` block)."""

    sql: str
    index: str | None = None
    table: str | None = None


@dataclass(frozen=True)
class Directives:
    transactional: bool
    former_checksums: frozenset[str]


def parse_directives(sql: str) -> Directives:
    """The ``-- branchline:`` lines that open ``sql``. Unknown or misplaced ones are refused:
    a misspelt ``no-transaction`` would otherwise run CONCURRENTLY in a transaction and fail
    only when a database applies it."""
    lines = sql.splitlines()
    leading = 0
    while leading < len(lines) and _DIRECTIVE.match(lines[leading]):
        leading += 1
    for line in lines[leading:]:
        if _DIRECTIVE.match(line.strip()):
            raise MigrationError(f"a '-- branchline:' directive after the first lines: {line!r}")
    transactional = True
    former: set[str] = set()
    for line in lines[:leading]:
        match = _DIRECTIVE.match(line)
        assert match is not None
        value = match[1].strip()
        if value == _NO_TRANSACTION:
            transactional = False
        elif (found := _FORMER.match(value)) is not None:
            former.add(found[1])
        else:
            raise MigrationError(f"unknown migration directive: {line!r}")
    return Directives(transactional, frozenset(former))


def split_statements(sql: str) -> list[str]:
    """``sql``'s statements, comments removed, split at the semicolons that end them (not
    those inside quotes, quoted identifiers, dollar quotes or comments)."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            current.append(" ")
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise MigrationError("unterminated /* comment")
            current.append(" ")
        elif ch in "'\"":
            end = i + 1
            while True:
                end = sql.find(ch, end)
                if end < 0:
                    raise MigrationError(f"unterminated {ch} quote")
                if sql.startswith(ch * 2, end):  # a doubled quote is the quote itself
                    end += 2
                    continue
                break
            current.append(sql[i : end + 1])
            i = end + 1
        elif ch == "$" and (tag := re.match(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            end = sql.find(tag[0], i + len(tag[0]))
            if end < 0:
                raise MigrationError(f"unterminated {tag[0]} quote")
            current.append(sql[i : end + len(tag[0])])
            i = end + len(tag[0])
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    return [" ".join(s.split()) for s in statements if s.strip()]


def concurrent_statements(sql: str) -> list[Statement]:
    """The statements of a no-transaction migration, each checked to be one that a later run
    may repeat after an interruption."""
    found: list[Statement] = []
    for text in split_statements(sql):
        if (create := _CREATE_CONCURRENTLY.match(text)) is not None:
            found.append(Statement(text, create["index"].lower(), create["table"].lower()))
        elif _DROP_CONCURRENTLY.match(text):
            found.append(Statement(text))
        elif _DO_BLOCK.match(text):
            if "--" in text:
                # the lines joined, a comment would swallow the rest of the block
                raise MigrationError(f"a '--' inside a no-transaction DO block: {text[:80]!r}")
            found.append(Statement(text))
        else:
            raise MigrationError(
                "a no-transaction migration holds only CREATE INDEX CONCURRENTLY IF NOT EXISTS, "
                f"DROP INDEX CONCURRENTLY IF EXISTS and DO statements, not: {text[:80]!r}"
            )
    if not found:
        raise MigrationError("a no-transaction migration without statements")
    return found


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def directives(self) -> Directives:
        return parse_directives(self.sql)

    def accepts(self, recorded: str) -> bool:
        """Whether ``recorded``, the checksum a database recorded when it applied this
        migration, is this text's or one it declares as its former text's."""
        return recorded == self.checksum or recorded in self.directives.former_checksums

    def check(self) -> None:
        """Refuse a file the runner could not apply as written (before any database sees it)."""
        if not self.directives.transactional:
            concurrent_statements(self.sql)


def load_migrations(package: str) -> list[Migration]:
    """Migrations are the ``NNN_name.sql`` files of ``package`` (e.g. ``x.migrations``)."""
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {package}: {versions}")
    for migration in found:
        try:
            migration.check()
        except MigrationError as exc:
            raise MigrationError(
                f"{package} {migration.version:03d}_{migration.name}: {exc}"
            ) from exc
    return found


async def _lock(conn: PgConnection) -> None:
    """Take the runner's session-level lock by polling. A session blocked in
    ``pg_advisory_lock`` keeps the snapshot of its waiting statement, and CREATE INDEX
    CONCURRENTLY waits for every older snapshot of the database before it ends: a second
    replica waiting that way for the replica building the index would deadlock with it. A
    failed ``pg_try_advisory_lock`` returns at once and holds nothing."""
    tries = 0
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
        await asyncio.sleep(_LOCK_POLL_SECONDS[min(tries, len(_LOCK_POLL_SECONDS) - 1)])
        tries += 1


_INVALID_INDEX = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = to_regclass($1) AND c.relname = $2 AND NOT i.indisvalid
"""


async def _apply_without_transaction(conn: PgConnection, migration: Migration) -> None:
    for statement in concurrent_statements(migration.sql):
        if statement.index is not None:
            # An interrupted CREATE INDEX CONCURRENTLY leaves its index behind, INVALID (never
            # used by a read, still maintained by writes): IF NOT EXISTS would keep it so.
            invalid = await conn.fetchval(_INVALID_INDEX, statement.table, statement.index)
            if invalid is not None:
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {invalid}")
        await conn.execute(statement.sql)


async def migrate(conn: PgConnection, service: str, migrations: list[Migration]) -> int:
    """Apply what is missing; returns how many were applied."""
    await _lock(conn)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   service text NOT NULL,
                   version int NOT NULL,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (service, version))"""
        )
        rows = await conn.fetch(
            "SELECT version, name, checksum FROM schema_migrations WHERE service = $1", service
        )
        applied = {r["version"]: r for r in rows}
        pending: list[Migration] = []
        for migration in migrations:
            done = applied.get(migration.version)
            if done is None:
                pending.append(migration)
            elif not migration.accepts(done["checksum"]):
                raise MigrationError(
                    f"{service} migration {migration.version:03d}_{migration.name} was "
                    "edited after it was applied; add a new migration instead"
                )
        outside = [m for m in pending if not m.directives.transactional]
        if outside and conn.is_in_transaction():
            # Refused before anything is applied: the caller's transaction would commit the
            # migrations before the first one that cannot run in it.
            raise MigrationError(
                f"{service} migration {outside[0].version:03d}_{outside[0].name} runs outside "
                "a transaction; the runner's connection is in one"
            )
        count = 0
        for migration in pending:
            if migration.directives.transactional:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await _record(conn, service, migration)
            else:
                await _apply_without_transaction(conn, migration)
                await _record(conn, service, migration)
            count += 1
        return count
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _record(conn: PgConnection, service: str, migration: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (service, version, name, checksum) VALUES ($1, $2, $3, $4)",
        service,
        migration.version,
        migration.name,
        migration.checksum,
    )


EVENT_STORE_MIGRATIONS = ("eventstore", "branchline_shared.eventstore.migrations")
"""The migration series of the shared event store (intake's and followup's databases)."""


async def migrate_database(dsn: str, series: Sequence[tuple[str, str]]) -> None:
    """Create the database of ``dsn`` if needed and apply each ``(name, package)`` migration
    series in order (idempotent, safe when several processes start at once)."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        for name, package in series:
            await migrate(conn, name, load_migrations(package))
    finally:
        await conn.close()
