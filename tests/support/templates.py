"""Migrated template databases: a test's service database is a copy, not a fresh migration.

Each service's ``prepare_database`` creates and migrates a test's database (0.1-0.3 s each,
four per test that starts the whole stack); ``CREATE DATABASE ... TEMPLATE`` of a migrated one
takes a fraction of that. Once per session, after PostgreSQL starts, each service's real
``prepare_database`` migrates a template database; from then on, in this process, a database
named as :func:`tests.support.stack.make_settings` names them (``t<12 hex>_<service>``) that
does not exist yet is created as a copy of its service's template, and the migration runner
then finds every migration applied (it still checks each one's checksum).

Everything else still migrates from scratch: the migration tests' own databases (other names,
or ``ensure_database`` imported from ``branchline_shared.postgres.pool``), every service run in
a subprocess (the e2e dev stack, the chaos harness, the intake processes), and the whole suite
with ``BRANCHLINE_TEST_FRESH_DATABASES=1``.

A copy does not carry the database's own settings (``ALTER DATABASE ... SET``, as followup's
migration 002 sets ``search_path``): they are copied after it from ``pg_db_role_setting``.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

SERVICES = ("intake", "followup", "keys", "audit")
_TEST_DATABASE = re.compile(r"t[0-9a-f]{12}_(intake|followup|keys|audit)")


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TemplateDatabases:
    """The session's migrated templates, by service, and the ``ensure_database`` that copies
    them."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        tag = uuid.uuid4().hex[:12]
        self.names = {service: f"tpl{tag}_{service}" for service in SERVICES}
        self.copies = 0

    def template_for(self, dsn: str) -> str | None:
        """The template a database of ``dsn`` is copied from, or None (created empty)."""
        match = _TEST_DATABASE.fullmatch(urlsplit(dsn).path.lstrip("/"))
        return self.names[match.group(1)] if match else None

    async def create(self) -> None:
        """Migrate one template per service with the services' own ``prepare_database``."""
        from branchline_audit.adapters.database import prepare_database as prepare_audit
        from branchline_followup.bootstrap import prepare_database as prepare_followup
        from branchline_intake.bootstrap import prepare_database as prepare_intake
        from branchline_shared.crypto.keystore import prepare_key_database
        from tests.support.stack import Infra, make_settings

        infra = Infra(self.admin_url, "127.0.0.1:9")  # the broker is not used here
        url = {service: infra.database_url(name) for service, name in self.names.items()}
        with tempfile.TemporaryDirectory() as data_dir:
            settings = make_settings(
                infra,
                Path(data_dir),
                intake_database_url=url["intake"],
                followup_database_url=url["followup"],
                keys_database_url=url["keys"],
                audit_database_url=url["audit"],
                # Roles and grants are the test's own (its prepare_database provisions them).
                audit_db_provision=False,
            )
            await prepare_intake(settings)
            await prepare_followup(settings)
            await prepare_key_database(url["keys"])
            await prepare_audit(settings)

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.names.values():
                await conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)}")
        finally:
            await conn.close()

    def ensure_database(
        self, original: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        """``ensure_database`` that creates a test's service database as a template's copy."""

        async def ensure_database(dsn: str) -> None:
            template = self.template_for(dsn)
            if template is None:
                await original(dsn)
                return
            await self._copy(dsn, template)

        return ensure_database

    async def _copy(self, dsn: str, template: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        conn = await asyncpg.connect(_with_database(dsn, "postgres"))
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return
            try:
                await conn.execute(f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(template)}")
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                return  # another task created it between our check and our create
            await _copy_database_settings(conn, template, name)
            self.copies += 1
        finally:
            await conn.close()


async def copy_database(dsn: str, source: str) -> None:
    """Create the database ``dsn`` names as a copy of the database ``source`` (which nobody
    may be connected to), its database settings included.

    The sources here are filled databases (tens of thousands of rows, #12): copied file by
    file (``STRATEGY = FILE_COPY``), not block by block through the WAL as PostgreSQL's
    default does (WAL_LOG, the better way for the small migrated templates above)."""
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(_with_database(dsn, "postgres"))
    try:
        await conn.execute(
            f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(source)} STRATEGY = FILE_COPY"
        )
        await _copy_database_settings(conn, source, name)
    finally:
        await conn.close()


async def _copy_database_settings(conn: asyncpg.Connection, source: str, target: str) -> None:
    """``ALTER DATABASE target SET`` (and ``ALTER ROLE ... IN DATABASE``) as ``source`` has."""
    rows = await conn.fetch(
        """SELECT r.rolname, s.setconfig
             FROM pg_db_role_setting s
             JOIN pg_database d ON d.oid = s.setdatabase
             LEFT JOIN pg_roles r ON r.oid = s.setrole
            WHERE d.datname = $1""",
        source,
    )
    for row in rows:
        prefix = (
            f"ALTER ROLE {_quote(row['rolname'])} IN DATABASE {_quote(target)}"
            if row["rolname"] is not None
            else f"ALTER DATABASE {_quote(target)}"
        )
        for entry in row["setconfig"]:
            key, value = entry.split("=", 1)
            # set_config parses the value as SET would (a list stays a list), FROM CURRENT
            # stores it exactly; the admin session's own value is put back after.
            async with conn.transaction():
                await conn.execute("SELECT set_config($1, $2, true)", key, value)
                await conn.execute(f"{prefix} SET {key} FROM CURRENT")


def fresh_requested(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


def run(step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` on a loop of its own, leaving the thread's current loop (pytest-asyncio's
    session loop) as it was."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(step())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
