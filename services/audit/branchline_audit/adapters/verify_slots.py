"""The API's verifies, limited across every audit API process on one database (#12,
docs/audit.md "The API's verify").

A verify's processes read the whole ledger, so each one running costs the database a full
scan and the host its cores; several uvicorn processes (or hosts) of one deployment each
allowing one would run as many at once. The limit is therefore held in PostgreSQL: a verify
runs while it holds one of ``limit`` session-level advisory locks, taken with
``pg_try_advisory_lock`` (never waits: none free is a refusal) on a connection of its own,
opened for that verify and closed after it. The session holds the lock, so whatever ends the
verify ends the hold: the verify finishing or failing, its client going away, its API process
killed (the server sees the connection close). Not a pooled connection: the audit pools skip
the reset query that would unlock it (``_keep_session``), and a pool must not lend a
connection that holds a lock to another request.

The locks use the two-integer key form, a key space of its own in ``pg_locks`` (objsubid 2):
no bigint key of the ledger, the checkpoints, the migrations or the relay can meet them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

__all__ = ["VERIFY_LOCK_CLASS", "VERIFY_SESSION_SETTINGS", "PostgresVerifySlots"]

logger = logging.getLogger(__name__)

VERIFY_LOCK_CLASS = 0x76726679  # "vrfy"; slot i is the key (VERIFY_LOCK_CLASS, i)

VERIFY_SESSION_SETTINGS = {
    # Whoever holds a slot is named in pg_stat_activity (and pg_locks by its pid).
    "application_name": "branchline-audit-verify",
    # A host that vanishes without closing its connection (power, network) would keep the
    # lock until the server's TCP keepalive notices, two hours by Linux's defaults: probed
    # after 10 s idle, every 5 s, given up after 3 unanswered, the slot is free within about
    # 25 s. The session is idle while the verify runs, so no statement timeout can do this.
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


class PostgresVerifySlots:
    """``limit`` verifies at a time across every process on the database at
    ``database_url``; a process also counts its own, so that it refuses without opening a
    connection once it alone holds them all."""

    def __init__(self, database_url: str, limit: int = 1, *, connect_timeout: float = 10) -> None:
        if limit < 1:
            raise ValueError("at least one verify must be allowed")
        self._database_url = database_url
        self.limit = limit
        self._connect_timeout = connect_timeout
        self.held_here = 0

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Yields whether a slot is held for the block (False: every one is taken, by this
        process or another; nothing is held). The slot is freed when the block ends, however
        it ends."""
        if self.held_here >= self.limit:
            yield False
            return
        self.held_here += 1
        try:
            conn = await asyncpg.connect(
                self._database_url,
                timeout=self._connect_timeout,
                server_settings=VERIFY_SESSION_SETTINGS,
            )
            try:
                yield await _take_one(conn, self.limit)
            finally:
                await _close(conn)
        finally:
            self.held_here -= 1


async def _take_one(conn: asyncpg.Connection[Any], limit: int) -> bool:
    # One try per slot, in order: a few round trips at most (the limit is small), never a wait.
    for slot in range(limit):
        if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", VERIFY_LOCK_CLASS, slot):
            return True
    return False


async def _close(conn: asyncpg.Connection[Any]) -> None:
    """Closing the session frees its lock; a connection that cannot be closed in time (or a
    close cancelled) is dropped, which frees it too (the server sees the socket close)."""
    try:
        await conn.close(timeout=5)
    except Exception:
        # A lost connection has freed the lock already; the verify's answer stands.
        logger.warning("a verify's lock connection did not close; dropped", exc_info=True)
        conn.terminate()
    except BaseException:
        conn.terminate()
        raise
