"""asyncpg pools, opened and closed explicitly by a service's composition root."""

from __future__ import annotations

import asyncio
import time
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


PROBE_SHARE = 0.1
"""The share of the pool's ``statement_timeout`` within which a :class:`PromptProbe` must be
answered (acquire and statement together): a database that takes a tenth of the timeout to
answer a cheap statement is slow for everyone, not only for the work it cancelled (#12)."""

PROBE_BOUND_S = 2.0
"""A probe's bound when the pool has no ``statement_timeout`` (0), or a share of it longer."""

PROBE_FLOOR_S = 0.05
"""The least a probe is given when the share of a short ``statement_timeout`` is less (a
100 ms timeout: 50 ms, not 10 ms), never more than the timeout itself: a busy 2-core machine
answers the probe in up to ~16 ms (docs/performance.md, Round 31 "probe"), so a share under
that would miss it now and then, and a true poison event would never be dead-lettered (#12)."""


def probe_budget_s(
    timeout_ms: int,
    share: float = PROBE_SHARE,
    floor_s: float = PROBE_FLOOR_S,
    bound_s: float = PROBE_BOUND_S,
) -> float:
    """How long a :class:`PromptProbe` may take with a pool whose ``statement_timeout`` is
    ``timeout_ms`` (0: none): ``share`` of it, at least ``floor_s`` but never more than the
    timeout itself, at most ``bound_s``; ``bound_s`` without a timeout."""
    if timeout_ms <= 0:
        return bound_s
    timeout_s = timeout_ms / 1000
    return min(bound_s, timeout_s, max(share * timeout_s, floor_s))


class PromptProbe:
    """Whether the database answers ``statement`` (bind ``args``), a cheap statement of the
    kind every unit of the caller's work runs first (the lock each of them takes), **promptly**:
    within :data:`PROBE_SHARE` of the pool's ``statement_timeout`` (read once; at least
    :data:`PROBE_FLOOR_S` but no more than the timeout, at most :data:`PROBE_BOUND_S`:
    :func:`probe_budget_s`), the acquire included. A cancelled statement followed by a prompt
    answer is the work's own; an answer slow or missing says the database (or the lock every
    unit needs) is slow for everyone (#12, docs/reliability.md "A statement cancelled again
    and again")."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        statement: str = "SELECT 1",
        *args: object,
        share: float = PROBE_SHARE,
        bound_s: float = PROBE_BOUND_S,
    ) -> None:
        self._pool = pool
        self._statement = statement
        self._args = args
        self._share = share
        self._bound_s = bound_s
        self.within_s: float | None = None  # known after the first probe

    async def _within(self) -> float:
        if self.within_s is None:
            async with self._pool.acquire(timeout=self._bound_s) as conn:
                ms = await conn.fetchval(
                    "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'",
                    timeout=self._bound_s,
                )
            self.within_s = probe_budget_s(int(ms), self._share, bound_s=self._bound_s)
        return self.within_s

    async def __call__(self) -> bool:
        try:
            within = await self._within()
            started = time.monotonic()
            async with asyncio.timeout(within), self._pool.acquire() as conn:
                await conn.execute(self._statement, *self._args)
            return time.monotonic() - started <= within
        except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
            return False
        except asyncpg.InternalClientError as error:
            if not session_ended_unread(error):  # as in :func:`is_reachable`
                raise
            return False


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
