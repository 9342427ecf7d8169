"""asyncpg pools, opened and closed explicitly by a service's composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from branchline_shared.postgres.faults import session_ended_unread

if TYPE_CHECKING:
    PgPool = asyncpg.Pool[Any]
    from asyncpg.pool import PoolConnectionProxy

    PgConnection = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:  # asyncpg's classes are generic only in the stubs; runtime annotations need the bare ones
    PgPool = asyncpg.Pool
    PgConnection = asyncpg.Connection


async def _init_connection(conn: PgConnection) -> None:
    # JSON columns travel as Python objects, encoded with orjson (fast, strict about NaN).
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: PgConnection) -> None:
    """No reset query on release. asyncpg still rolls back a transaction left open and drops
    the connection's listener callbacks before calling this."""


async def open_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, session_state: bool = True
) -> asyncpg.Pool[Any]:
    """``session_state=False`` is a promise that nothing done on the pool's connections
    outlives a transaction: no session ``SET``, ``LISTEN``, session-level advisory lock,
    ``WITH HOLD`` cursor or ``PREPARE``. Released connections then skip asyncpg's reset
    query (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), one round
    trip per release: per group commit on intake's write path (#12)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        reset=None if session_state else _keep_session,
    )
    assert pool is not None
    return pool


async def connect_one(dsn: str) -> PgConnection:
    """A connection of its own, outside every pool (a session-level lock's, a LISTEN's)."""
    return await asyncpg.connect(dsn, command_timeout=30)


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` if it does not exist (embedded stack, tests).

    Production databases are provisioned by the operator; this is a no-op there when the
    database exists.
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    if not name:
        return
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # another process created it between our check and our create
    finally:
        await conn.close()


async def is_reachable(pool: asyncpg.Pool[Any]) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
        return False
    except asyncpg.InternalClientError as error:
        # a connection whose session the server ended, its close not yet read (#12)
        if not session_ended_unread(error):
            raise
        return False
