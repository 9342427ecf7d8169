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

The lock's session sits idle while its verify runs, so a server-side idle timeout would end
it, and the lock with it, mid-verify: the session turns its own off (:data:`NO_IDLE_TIMEOUTS`).
Whatever else ends the hold (an operator's ``pg_terminate_backend``, a failover, a pooler in
transaction mode that runs the lock's statement on one server session and a later one on
another) is looked for every ``check_every`` seconds while the block runs and once right after
the lock is taken: the session still the one the lock was taken on (``pg_backend_pid``), the
lock still granted to it. A slot found lost cancels the block, which raises
:class:`~branchline_audit.application.ports.VerifySlotLost`: the verify stops with a clear
answer rather than running on beside another verify that took the freed slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from branchline_audit.application.ports import VerifySlotLost
from branchline_shared.logging_setup import describe_error

__all__ = [
    "CHECK_EVERY_S",
    "NO_IDLE_TIMEOUTS",
    "VERIFY_LOCK_CLASS",
    "VERIFY_SESSION_SETTINGS",
    "PostgresVerifySlots",
]

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


NO_IDLE_TIMEOUTS = (
    "idle_session_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
)
"""Turned off (0) for the lock's session, whatever the server, database or role sets: each
would end an idle (or long) session, its lock with it. Set after connecting, each only where
the server knows it (PostgreSQL 14+, 9.6+, 17+): named in the start-up packet, one a server
does not know would refuse the connection."""

CHECK_EVERY_S = 2.0
"""How often a running verify's slot is checked: one short query on the lock's own
connection (a verify of a large ledger runs for seconds to minutes)."""

_SLOT_STATE = """
SELECT pg_backend_pid() AS pid,
       EXISTS (SELECT FROM pg_locks
               WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2
                 AND granted AND pid = pg_backend_pid()
                 AND database = (SELECT oid FROM pg_database
                                 WHERE datname = current_database())) AS held
"""


class PostgresVerifySlots:
    """``limit`` verifies at a time across every process on the database at
    ``database_url``; a process also counts its own, so that it refuses without opening a
    connection once it alone holds them all."""

    def __init__(
        self,
        database_url: str,
        limit: int = 1,
        *,
        connect_timeout: float = 10,
        check_every: float = CHECK_EVERY_S,
    ) -> None:
        if limit < 1:
            raise ValueError("at least one verify must be allowed")
        if check_every <= 0:
            raise ValueError("the slot's check needs a positive interval")
        self._database_url = database_url
        self.limit = limit
        self._connect_timeout = connect_timeout
        self._check_every = check_every
        self.held_here = 0

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Yields whether a slot is held for the block (False: every one is taken, by this
        process or another; nothing is held). The slot is freed when the block ends, however
        it ends. A slot found lost while the block runs (the module's docstring) cancels the
        block, which then raises :class:`VerifySlotLost`."""
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
                await _without_idle_timeouts(conn)
                taken = await _take_one(conn, self.limit)
                if taken is None:
                    yield False
                    return
                slot, pid = taken
                # Once at once: a pooler in transaction mode may already have moved on.
                lost = await slot_lost(conn, slot, pid)
                if lost is not None:
                    raise VerifySlotLost(lost)
                async with _watched(conn, slot, pid, self._check_every):
                    yield True
            finally:
                await _close(conn)
        finally:
            self.held_here -= 1


async def _without_idle_timeouts(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute(
        "SELECT set_config(name, '0', false) FROM pg_settings WHERE name = ANY($1::text[])",
        list(NO_IDLE_TIMEOUTS),
    )


async def _take_one(conn: asyncpg.Connection[Any], limit: int) -> tuple[int, int] | None:
    """The slot taken and the server session (backend pid) holding it; None: all taken."""
    # One try per slot, in order: a few round trips at most (the limit is small), never a wait.
    for slot in range(limit):
        row = await conn.fetchrow(
            "SELECT pg_try_advisory_lock($1, $2) AS taken, pg_backend_pid() AS pid",
            VERIFY_LOCK_CLASS,
            slot,
        )
        assert row is not None
        if row["taken"]:
            return slot, int(row["pid"])
    return None


_CONNECTION_LOST = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # The server ends a session with a FATAL error and then closes its socket: asyncpg reads
    # the two separately, and a query sent between them (the error read while the connection
    # was idle, its end not yet) fails with this, the protocol no longer idle (#12).
    asyncpg.InternalClientError,
    OSError,
)


async def slot_lost(conn: asyncpg.Connection[Any], slot: int, pid: int) -> str | None:
    """Why ``slot``, taken by the server session ``pid`` on ``conn``, is no longer held;
    None while it is."""
    try:
        row = await conn.fetchrow(_SLOT_STATE, VERIFY_LOCK_CLASS, slot)
    except _CONNECTION_LOST as error:
        # Its SQLSTATE and type, never a message's quoted values (D-04): this goes to the
        # log and into the client's problem detail.
        return f"the verify lock's connection was lost ({describe_error(error)})"
    except Exception as error:
        # A check that cannot answer cannot say the slot is held: whatever it raised, the
        # block ends (a watcher that died of it would leave the block running unwatched).
        return f"the verify lock's slot could not be checked ({describe_error(error)})"
    if row is None:  # not from this query (one row always); as a failed check
        return "the verify lock's slot could not be checked (no answer)"
    if int(row["pid"]) != pid:
        # Not a session of its own: a pooler in transaction (or statement) mode. The lock
        # stays with a server session this process no longer reaches.
        return (
            f"the verify lock was taken on server session {pid} and the connection is now on "
            f"{row['pid']}: a connection pooler in transaction mode does not keep a session "
            "lock (point the audit API at PostgreSQL or a session-mode pool)"
        )
    if not row["held"]:
        return f"the verify lock of server session {pid} is no longer held"
    return None


@contextlib.asynccontextmanager
async def _watched(
    conn: asyncpg.Connection[Any], slot: int, pid: int, every: float
) -> AsyncIterator[None]:
    """The block, cancelled if the slot is found lost (as :func:`asyncio.timeout` cancels
    its block): it then raises :class:`VerifySlotLost` instead of the cancellation."""
    task = asyncio.current_task()
    assert task is not None
    lost: list[str] = []  # set, with the block cancelled, only while the block runs
    inside = True

    async def watch() -> None:
        while True:
            await asyncio.sleep(every)
            why = await slot_lost(conn, slot, pid)
            if why is not None:
                # A block already over is not cancelled after the fact: it ran held.
                if inside:
                    lost.append(why)
                    task.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        try:
            yield
        finally:
            inside = False
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    except asyncio.CancelledError:
        if lost and task.uncancel() == 0:  # no other cancellation (a client gone) pending
            logger.error("a verify was stopped: %s", lost[0])
            raise VerifySlotLost(lost[0]) from None
        raise
    if lost:  # the block took the cancellation and ended anyway: still not an answer
        task.uncancel()
        logger.error("a verify was stopped: %s", lost[0])
        raise VerifySlotLost(lost[0])


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
