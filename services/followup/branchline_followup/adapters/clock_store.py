"""The durable offset of the test clock (dev mode), shared by the API and worker processes."""

from __future__ import annotations

from datetime import timedelta

from branchline_shared.postgres.pool import PgConnection, PgPool


async def read_offset(pool: PgPool) -> timedelta:
    value = await pool.fetchval('SELECT "offset" FROM fu_clock WHERE singleton')
    return value if isinstance(value, timedelta) else timedelta(0)


async def lock_offset(conn: PgConnection) -> timedelta:
    """The offset, locked until the caller's transaction ends (one clock change at a time)."""
    value = await conn.fetchval('SELECT "offset" FROM fu_clock WHERE singleton FOR UPDATE')
    return value if isinstance(value, timedelta) else timedelta(0)


async def write_offset(conn: PgConnection, offset: timedelta) -> None:
    await conn.execute(
        'UPDATE fu_clock SET "offset" = $1, updated_at = now() WHERE singleton', offset
    )
