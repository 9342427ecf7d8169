"""A small ordered SQL migration runner.

Why not Alembic: the services use no ORM and talk SQL through asyncpg; a migration is a plain,
reviewable ``NNN_name.sql`` file shipped inside the service's package. The runner applies
the files in order, each in its own transaction, records name and checksum in
``schema_migrations``, refuses to run when an applied file has since been edited, and holds a
PostgreSQL advisory lock so several replicas starting at once migrate exactly once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

from branchline_shared.postgres.pool import PgConnection, ensure_database

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6272616E63686C  # "branchl"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


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
    return found


async def migrate(conn: PgConnection, service: str, migrations: list[Migration]) -> int:
    """Apply what is missing; returns how many were applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
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
        count = 0
        for migration in migrations:
            done = applied.get(migration.version)
            if done is not None:
                if done["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{service} migration {migration.version:03d}_{migration.name} was "
                        "edited after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (service, version, name, checksum) "
                    "VALUES ($1, $2, $3, $4)",
                    service,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            count += 1
        return count
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


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
