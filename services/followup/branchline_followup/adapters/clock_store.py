"""The durable offset of the test clock (dev mode), shared by the API and worker processes."""

from __future__ import annotations

from collections.abc import Callable
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


class PostgresClockOffsets:
    """The test clock's offset in ``fu_clock`` (application/clock.py's ``ClockOffsets``)."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    async def read(self) -> timedelta:
        return await read_offset(self._pool)

    async def change(self, to: Callable[[timedelta], timedelta]) -> timedelta:
        async with self._pool.acquire() as conn, conn.transaction():
            offset = to(await lock_offset(conn))
            await write_offset(conn, offset)
        return offset
