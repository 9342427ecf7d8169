"""What a transaction left stored when its connection was lost while its ``COMMIT`` was under
way: asked of the store on a fresh connection, never guessed (#12, docs/reliability.md, "A
database fault").

A lost connection (no answer from the server) says nothing of the commit: the server may
have committed before the answer was lost. A server-reported error at ``COMMIT`` is not
this case (the server answered: it rolled back). Every writer here knows the ids of the
events its transaction wrote before it writes them, so the question is whether those rows
are there: all of them (committed) or none (not), as one transaction's rows are. Asked only
after such a loss: a commit that answers costs nothing more.

An id may be another writer's too (a caller's own ``event_id``, resent meanwhile through
another request or intake process): a row found under it is the transaction's own only if
it is the row the transaction wrote, its global position the one the write drew (known when
the write answered before the ``COMMIT``) or, when the write's answer was lost with it (a
guessed group's self-committing statement), its envelope the one sent. Another writer's row
under one of the ids means the transaction did not commit (the id is unique: it could not
have stored its own), and never will (Round 25, #12)."""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from branchline_shared.eventstore.ports import IdsTakenAfterLostCommit
from branchline_shared.postgres.faults import (
    NEVER_TRANSIENT,
    CommitOutcomeUnknown,
    is_transient_database_fault,
)

__all__ = [
    "CommitOutcome",
    "CommitOutcomeUnknown",
    "IdsTakenAfterLostCommit",
    "Written",
    "after_lost_commit",
    "judged",
    "lost_in_flight",
]

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 5.0
"""How long the store is asked on a fresh connection before the outcome is called unknown:
the caller is still waiting for its answer."""

_FIND_WRITTEN = """
SELECT e.event_id, e.global_position,
       CASE WHEN w.global_position IS NOT NULL THEN e.global_position = w.global_position
            WHEN w.envelope IS NOT NULL THEN e.envelope = w.envelope::jsonb
            ELSE true END AS own
FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS w(event_id, global_position, envelope)
JOIN es_events e ON e.event_id = w.event_id
"""
"""The rows stored under the ids the transaction wrote, each with whether it is the row the
transaction wrote (``own``): its global position the one the write drew (a sequence's value
is drawn once: no other writer's row has it), else its envelope the one the write sent (the
event as decided, its ``recorded_at`` included), else (a writer that tells neither) taken
for its own, as before Round 25."""

_END_LOST_SESSION = (
    "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity "
    "WHERE pid = $1 AND datname = current_database() AND usename = current_user"
)
"""The lost connection's server session ended, and waited for (``$2`` ms), before the store
is asked. A loss seen by the client says nothing of where the server is: the ``COMMIT`` may
have reached it and be flushing its WAL record, its rows not yet visible, so a read at that
moment finds none of them and a moment later all. Once the session has ended, what it left
is final: a ``COMMIT`` whose record was written completes first (the server holds off the
signal in that critical section), anything else is rolled back. No row: the session has
already ended. ``false``: it did not end within the wait, the outcome cannot be known."""

END_WAIT_MS = 3000
"""How long the server waits for the lost session to end (of :data:`ASK_TIMEOUT_S`)."""


class CommitOutcome(enum.Enum):
    COMMITTED = "committed"
    NOT_COMMITTED = "not committed"
    TAKEN = "not committed, another writer's events under its ids"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Written:
    """An event a lost transaction wrote, as the store is asked for it: its id, and what
    tells its own row from another writer's under the same id (:data:`_FIND_WRITTEN`): the
    global position its write drew, or the envelope text the write sent (``None`` both: a
    writer whose ids no other writer sends, any row under the id is taken for its own)."""

    event_id: uuid.UUID
    global_position: int | None = None
    envelope: str | None = None


def lost_in_flight(exc: BaseException) -> bool:
    """The connection was lost without the server's answer (a socket error, the client's
    timeout, asyncpg's closed connection): what the server did with the last message is not
    known. A server-reported error (any other ``PostgresError``) is an answer."""
    return isinstance(
        exc, OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
    ) and not isinstance(exc, NEVER_TRANSIENT)


def judged(written: int, found: int | None, taken: int = 0) -> CommitOutcome:
    """The outcome of a transaction that wrote ``written`` events of which ``found`` are
    stored (``None``: the store could not be asked) and ``taken`` are held by another
    writer's events under the same ids. One transaction's rows are all there or none;
    another writer's row under one of its ids says it did not commit (the ids are unique),
    unless some of its own are there too; anything between is not understood, so not
    claimed either way."""
    if found is None or written == 0:
        return CommitOutcome.UNKNOWN
    if taken:
        return CommitOutcome.TAKEN if found == 0 else CommitOutcome.UNKNOWN
    if found == written:
        return CommitOutcome.COMMITTED
    if found == 0:
        return CommitOutcome.NOT_COMMITTED
    return CommitOutcome.UNKNOWN


async def after_lost_commit(
    pool: asyncpg.Pool[Any],
    written: Sequence[Written | uuid.UUID],
    lost: BaseException,
    *,
    session: int | None,
) -> dict[uuid.UUID, int]:
    """Called when ``lost`` (:func:`lost_in_flight`) ended the ``COMMIT`` of a transaction
    that wrote ``written`` (:class:`Written`, or bare ids: any row under them its own),
    after its connection went back to ``pool``: their global positions if the transaction
    committed; else ``lost`` is raised again (nothing stored, the 503 ``unavailable`` it
    always was), :class:`IdsTakenAfterLostCommit` if another writer's events hold some of
    its ids (nothing of it stored: run it again, and the idempotency rules answer those
    ids), or :class:`CommitOutcomeUnknown` if the store could not be asked (or answered
    what one transaction cannot leave). ``session``: the lost connection's server process
    id, ended first (:data:`_END_LOST_SESSION`); ``None`` (not known) leaves the outcome
    unknown unless every row is already there."""
    wanted = {
        w.event_id if isinstance(w, Written) else w: w if isinstance(w, Written) else Written(w)
        for w in written
    }
    found: dict[uuid.UUID, int] | None = None
    taken: list[uuid.UUID] = []
    try:
        async with asyncio.timeout(ASK_TIMEOUT_S), pool.acquire() as conn:
            ended = session is not None and await _ended(conn, session)
            rows = await conn.fetch(
                _FIND_WRITTEN,
                list(wanted),
                [w.global_position for w in wanted.values()],
                [w.envelope for w in wanted.values()],
            )
        found = {r["event_id"]: r["global_position"] for r in rows if r["own"]}
        taken = [r["event_id"] for r in rows if not r["own"]]
        if not ended and not taken and len(found) < len(wanted):
            found = None  # the session may still commit them: not claimed either way
    except Exception as asking:
        if not is_transient_database_fault(asking):
            raise
        log.warning("the store could not be asked after a lost commit", exc_info=asking)
    outcome = judged(len(wanted), None if found is None else len(found), len(taken))
    log.warning(
        "a connection was lost during COMMIT; asked the store",
        extra={"outcome": outcome.value, "events": len(wanted), "taken": len(taken)},
    )
    if outcome is CommitOutcome.COMMITTED:
        assert found is not None
        return found
    if outcome is CommitOutcome.NOT_COMMITTED:
        raise lost
    if outcome is CommitOutcome.TAKEN:
        raise IdsTakenAfterLostCommit(
            f"the transaction's COMMIT was lost and it did not commit: another writer's "
            f"events hold {len(taken)} of its event ids"
        ) from lost
    raise CommitOutcomeUnknown(
        "the connection to the database was lost while the request's transaction was being "
        "committed, and the database could not be asked whether it was"
    ) from lost


async def _ended(conn: asyncpg.pool.PoolConnectionProxy[Any], session: int) -> bool:
    """Whether the server session ``session`` has ended (ended here if it had not). The
    asking connection's own session runs nothing else while it asks: what it did is final."""
    if conn.get_server_pid() == session:
        return True
    rows = await conn.fetch(_END_LOST_SESSION, session, END_WAIT_MS)
    return not rows or bool(rows[0][0])
