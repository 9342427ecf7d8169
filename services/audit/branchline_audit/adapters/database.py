"""The audit database: schema, roles and grants, and pools that act as the least-privileged role.

Role design (ADR-0006, names are settings):

- ``branchline_audit_owner`` (NOLOGIN) owns the ledger tables and the retention function. No
  process uses it; even so, the trigger refuses UPDATE, DELETE and TRUNCATE by it.
- ``branchline_audit_writer`` (NOLOGIN): SELECT and INSERT on the audit tables, nothing else.
  The API and the consumer switch to it (``SET ROLE``) on every pooled connection, so the
  grants, not the goodwill of the code, protect the data, also when the login is a superuser as
  on the embedded stack.
- ``branchline_audit_pruner`` (NOLOGIN): the writer's rights plus EXECUTE on
  ``audit_prune_entries``, used only by ``branchline audit prune``.

Roles are cluster-wide and many databases (tests, services) share one server: creating them is
idempotent and tolerates a concurrent creator. In production an operator may provision roles
and grants once (``audit_db_provision = false``) and grant the roles to the login role.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from branchline_shared.postgres.migrations import load_migrations, migrate
from branchline_shared.postgres.pool import PgConnection, ensure_database

if TYPE_CHECKING:
    # Only named in annotations: a verifying segment's process imports this module for
    # :func:`role_pool` and is handed the database's URL, never the settings (#12).
    from branchline_shared.settings import AuditSettings

SERVICE = "audit"
TABLES = (
    "audit_ledger",
    "audit_merkle_nodes",
    "audit_checkpoints",
    "audit_restricted_clients",
    "audit_source_positions",
    "audit_staff_employment_ends",
    "audit_staff_gift_clients",
    "audit_refusal_hints",
)
PRUNE_FUNCTION = "audit_prune_entries(bigint[], jsonb[], timestamptz)"
EVENT_FUNCTION = "audit_entry_event(bytea, bigint)"
"""The event inside an entry's canonical bytes (migration 006); retention's trigger calls it,
so it is owned like the tables and the retention function."""
HINTS_FUNCTION = "audit_refusal_hints_superseded()"
"""The trigger that deletes the refusal hints a newer one supersedes (migration 011, #12):
SECURITY DEFINER, owned by the owner role; migration 012 lets whichever role owns it delete."""
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PROVISION_LOCK = 0x61756469745F726F  # "audit_ro"


def _ident(role: str) -> str:
    if not _ROLE.fullmatch(role):
        raise ValueError(f"not a plain role name: {role!r}")
    return f'"{role}"'


async def _create_role(conn: PgConnection, role: str) -> None:
    # DO blocks take no parameters; the name is validated above and quoted.
    await conn.execute(
        f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {_ident(role)} NOLOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$"""  # noqa: S608 - a validated identifier, DO takes no parameters
    )


async def _already_provisioned(conn: PgConnection, settings: AuditSettings) -> bool:
    """Every audit table and the prune function owned by the owner role, the writer able to
    insert and the pruner to execute: nothing to (re)apply."""
    return bool(
        await conn.fetchval(
            """
            SELECT count(*) = cardinality($1::text[])
                   AND (SELECT pg_get_userbyid(proowner) = $2 FROM pg_proc
                        WHERE proname = 'audit_prune_entries')
                   AND (SELECT pg_get_userbyid(proowner) = $2 FROM pg_proc
                        WHERE proname = 'audit_entry_event')
                   AND (SELECT pg_get_userbyid(proowner) = $2 FROM pg_proc
                        WHERE proname = 'audit_refusal_hints_superseded')
                   AND bool_and(has_table_privilege($3, tablename, 'INSERT'))
                   AND bool_and(NOT has_table_privilege($3, tablename, 'UPDATE'))
                   AND has_function_privilege($4, $5, 'EXECUTE')
            FROM pg_tables
            WHERE schemaname = 'public' AND tablename = ANY($1::text[]) AND tableowner = $2
            """,
            list(TABLES),
            settings.audit_db_owner_role,
            settings.audit_db_writer_role,
            settings.audit_db_pruner_role,
            PRUNE_FUNCTION,
        )
    )


async def provision_roles(conn: PgConnection, settings: AuditSettings) -> None:
    """Create the roles if missing and (re)apply ownership and grants; idempotent."""
    owner = _ident(settings.audit_db_owner_role)
    writer = _ident(settings.audit_db_writer_role)
    pruner = _ident(settings.audit_db_pruner_role)
    for role in (
        settings.audit_db_owner_role,
        settings.audit_db_writer_role,
        settings.audit_db_pruner_role,
    ):
        await _create_role(conn, role)
    await conn.execute("SELECT pg_advisory_lock($1)", _PROVISION_LOCK)
    try:
        if await _already_provisioned(conn, settings):
            # ALTER ... OWNER takes exclusive locks: never again on tables a running API or
            # consumer of another process is using (they would deadlock with it).
            return
        async with conn.transaction():
            tables = ", ".join(TABLES)
            for table in TABLES:
                await conn.execute(f"ALTER TABLE {table} OWNER TO {owner}")
            await conn.execute(f"REVOKE ALL ON {tables} FROM PUBLIC")
            await conn.execute(f"REVOKE ALL ON {tables} FROM {writer}, {pruner}")
            await conn.execute(f"GRANT SELECT, INSERT ON {tables} TO {writer}, {pruner}")
            await conn.execute(f"GRANT USAGE ON SCHEMA public TO {writer}, {pruner}")
            await conn.execute(f"ALTER FUNCTION {PRUNE_FUNCTION} OWNER TO {owner}")
            await conn.execute(f"ALTER FUNCTION {EVENT_FUNCTION} OWNER TO {owner}")
            await conn.execute(f"ALTER FUNCTION {HINTS_FUNCTION} OWNER TO {owner}")
            await conn.execute(f"REVOKE ALL ON FUNCTION {HINTS_FUNCTION} FROM PUBLIC")
            await conn.execute(f"REVOKE ALL ON FUNCTION {PRUNE_FUNCTION} FROM PUBLIC")
            await conn.execute(f"GRANT EXECUTE ON FUNCTION {PRUNE_FUNCTION} TO {pruner}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _PROVISION_LOCK)


async def prepare_database(settings: AuditSettings) -> None:
    """Create the database, apply the migrations, provision roles and grants."""
    await ensure_database(settings.audit_database_url)
    conn = await asyncpg.connect(settings.audit_database_url)
    try:
        await migrate(conn, SERVICE, load_migrations("branchline_audit.migrations"))
        if settings.audit_db_provision:
            await provision_roles(conn, settings)
    finally:
        await conn.close()


_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    """jsonb's binary form: a version byte, then JSON text. ``bytes`` are taken as JSON text
    already encoded (orjson refuses to encode bytes, so nothing meant them otherwise): the
    ledger hands each event's JSON as it stands in the entry's canonical bytes instead of
    encoding the event a second time (#12). PostgreSQL parses and checks it as any jsonb."""
    return _JSONB_VERSION + (value if type(value) is bytes else orjson.dumps(value))


def _decode_jsonb(data: bytes) -> Any:
    if data[:1] != _JSONB_VERSION:
        raise ValueError(f"jsonb binary format version {data[:1]!r} is not 1")
    return orjson.loads(memoryview(data)[1:])


def _role_init(role: str) -> Any:
    async def init(conn: PgConnection) -> None:
        await conn.set_type_codec(
            "json",
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )
        # Binary, so that the ledger can append with COPY (binary only in asyncpg).
        await conn.set_type_codec(
            "jsonb",
            encoder=_encode_jsonb,
            decoder=_decode_jsonb,
            schema="pg_catalog",
            format="binary",
        )
        # For the connection's life: nothing resets it (see _keep_session).
        await conn.execute(f"SET ROLE {_ident(role)}")

    return init


async def _keep_session(conn: PgConnection) -> None:
    """No reset query when a connection returns to the pool (#12): nothing done on an audit
    pool's connections outlives a transaction but the role set when it opens, which the
    reset left alone anyway (no session ``SET``, ``LISTEN``, session-level advisory lock,
    ``WITH HOLD`` cursor or ``PREPARE``; the ledger's lock is transaction-level). asyncpg
    still rolls back a transaction left open and drops listener callbacks before calling
    this. The reset query (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL``) was one round trip per append."""


async def open_role_pool(
    settings: AuditSettings, role: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool[Any]:
    """A pool whose every connection acts as ``role`` (the writer or the pruner)."""
    return await role_pool(settings.audit_database_url, role, min_size=min_size, max_size=max_size)


async def role_pool(
    database_url: str, role: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool[Any]:
    """:func:`open_role_pool` from the database's URL (a verifying process has no settings)."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_role_init(role),
        command_timeout=60,
        reset=_keep_session,
    )
    assert pool is not None
    return pool
