"""Which database faults pass by themselves: one list for every API (answered 503
``unavailable`` with ``Retry-After``), the Kafka consumers and the relay (retried), so that
they never disagree on what is an outage and what is a bug (#12, docs/reliability.md).

Each of these ends its transaction on the server before the error reaches the caller (the
connection is gone, or the statement failed and ``Connection.transaction()`` rolls back), so
nothing of the request is stored. A programming error (42xxx, 22xxx, an undefined column, a
constraint a use case should have checked) is not in the list: it stays a 500, logged as a
bug, and a consumer dead-letters or stops on it instead of retrying it for ever."""

from __future__ import annotations

import re
import uuid

import asyncpg
import asyncpg.exceptions._base as asyncpg_base


class CommitOutcomeUnknown(Exception):
    """The connection was lost while a transaction's ``COMMIT`` was under way and the store
    could not be asked afterwards whether it committed (``postgres/commit_outcome.py``). Listed
    as transient: a consumer retries it as it did the lost connection; the APIs answer it 503
    ``outcome-unknown``, not ``unavailable``: something may have been stored (docs/api.md).

    It names the event id the transaction gave each submission it wrote (:meth:`name`), as
    the writer that chose them knows them: a caller that sent an event without an id is told
    the one it may have been stored under, and sends it again with that id (stored once)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._named: dict[int, tuple[object, uuid.UUID]] = {}

    def name(self, submission: object, event_id: uuid.UUID) -> None:
        """``submission`` (the object the caller sent) was written as ``event_id``."""
        self._named[id(submission)] = (submission, event_id)

    def event_id_of(self, submission: object) -> uuid.UUID | None:
        """The event id ``submission`` was written as, if named (by identity: the named
        submissions are kept, so their ids are not reused)."""
        named = self._named.get(id(submission))
        return named[1] if named is not None and named[0] is submission else None


TRANSIENT_DATABASE_FAULTS: tuple[type[Exception], ...] = (
    # Unreachable, or the connection lost mid-request (socket errors, and the client's own
    # timeouts, which are OSError's subclass TimeoutError since Python 3.11).
    OSError,
    asyncpg.PostgresConnectionError,  # 08xxx
    asyncpg.InterfaceError,  # a closed connection or a closing pool (less NEVER_TRANSIENT)
    # 57xxx: the server shut down or restarted, the backend terminated (pg_terminate_backend,
    # an idle session timeout), the server starting up, or the statement cancelled
    # (statement_timeout, pg_cancel_backend). Not 57P04, a dropped database: no retry helps.
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03
    asyncpg.IdleSessionTimeoutError,  # 57P05
    asyncpg.QueryCanceledError,  # 57014
    asyncpg.IdleInTransactionSessionTimeoutError,  # 25P03: the session is ended with it
    # 53xxx: too many connections, out of memory or disk, a configured limit reached.
    asyncpg.InsufficientResourcesError,
    # 25006: a write after a failover to a standby, until the pool reaches the new primary.
    asyncpg.ReadOnlySQLTransactionError,
    # 40001, 40P01: a conflict with another transaction that escaped the reruns (a fourth
    # lock cycle in a row): rolled back, nothing stored. Not 40003 (statement completion
    # unknown), where nothing can be said of what was stored.
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,  # 55P03: a lock_timeout
    CommitOutcomeUnknown,
)

NEVER_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg_base.DataError,
    asyncpg.ClientConfigurationError,
    asyncpg.UnsupportedClientFeatureError,
    asyncpg.UnsupportedServerFeatureError,
)
"""asyncpg's ``InterfaceError`` subclasses that say the same call will fail the same way again:
a value its codec refuses (the client-side ``DataError``, not PostgreSQL's class 22 of the same
name: decided by the event or request, so a consumer's event must be dead-lettered, not retried
for ever, and an API's answer is a bug, 500), or a client or server that lacks what is asked.
Every other ``InterfaceError`` (a closed connection, a closing pool) stays transient: a misread
outage would dead-letter good events, a misread programming error only holds the consumer
back, in plain sight (its lag and warnings)."""


_ENDED_UNREAD = re.compile(r"cannot switch to state \d+; another operation \(2\) is in progress")
"""asyncpg's protocol (``protocol/coreproto.pyx``) asked to start an operation while it sits
in its state 2, ``PROTOCOL_ERROR_CONSUME``, with no operation of its own under way (one that
is under way answers ``InterfaceError`` first: "another operation is in progress")."""


def session_ended_unread(exc: BaseException) -> bool:
    """The server ended the connection's session while it sat idle, and asyncpg has read the
    session's last error but not yet its close (#12). PostgreSQL ends a session (a
    ``pg_terminate_backend``, an idle session timeout, a shutdown) with a FATAL error and then
    closes the socket; asyncpg reads the two in separate event-loop turns. The unasked error,
    read while the protocol is idle, moves it to ``PROTOCOL_ERROR_CONSUME``, where it waits for
    a ``ReadyForQuery`` that never comes; an operation started on the connection then fails
    at once, before anything of it is sent, with ``InternalClientError("cannot switch to state
    N; another operation (2) is in progress")``. asyncpg aborts the connection with that error
    (``_coreproto_error``): the pool sees it closed when it comes back and drops it. Until
    then it is not ``is_closed()``, so a pool hands out every other connection so ended (it
    prefers those not closed): each fails the same way once.

    Matched on that class and message only: ``InternalClientError`` is asyncpg's class for
    its own unexpected states too, and those stay bugs (500, a dead letter). A connection in
    that state is lost for good whatever brought it there (nothing brings it back to idle but
    a ``ReadyForQuery``), so the match cannot misread a connection that would have worked."""
    return isinstance(exc, asyncpg.InternalClientError) and bool(_ENDED_UNREAD.match(str(exc)))


DATABASE_FAULT_CLASSES: tuple[type[Exception], ...] = (
    *TRANSIENT_DATABASE_FAULTS,
    asyncpg.InternalClientError,
)
"""The classes an API's handler of database faults is registered for: the shared list and the
class of :func:`session_ended_unread` (whose handler answers 503 only for that match, and
any other ``InternalClientError`` as the bug it is)."""


def is_transient_database_fault(exc: BaseException) -> bool:
    if session_ended_unread(exc):
        return True
    return isinstance(exc, TRANSIENT_DATABASE_FAULTS) and not isinstance(exc, NEVER_TRANSIENT)


CONFLICTS: tuple[type[Exception], ...] = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
)
"""The transient faults that are a conflict with another transaction: run again, they may pass
(a writer's reruns)."""


def is_outage(exc: BaseException) -> bool:
    """A transient fault that is no conflict with another transaction: the database ended or
    cancelled the request's statement, or could not take it (a lost connection, a cancel, a
    shutdown, too many connections, a standby). Nothing written by a statement it refused;
    run again at once it meets the same outage or the same wait, so it is answered (503
    ``unavailable``), not run again (#12: a guessed group's write, docs/intake.md)."""
    return is_transient_database_fault(exc) and not isinstance(exc, CONFLICTS)


def fault_detail(exc: BaseException) -> str:
    """What a caller is told of a transient fault: its kind, never the server's message (which
    may quote a value, docs/privacy.md)."""
    if isinstance(exc, CommitOutcomeUnknown):
        return (
            "the connection to the database was lost while the request was being committed "
            "and the database could not be asked whether it was: the outcome is unknown, it "
            "may have been stored; send the request again with the same event_ids (for an "
            "event sent without one, the event_id named here): stored once; followup's "
            "complete and reassign sent again as they were are answered as they were, recorded "
            "once; anything else: read what is stored before sending it again"
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        what = "the database cancelled the request's statement"
    elif isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        what = "the request conflicted with others at the database"
    elif isinstance(exc, asyncpg.LockNotAvailableError):
        what = "the request waited too long for a lock at the database"
    elif isinstance(exc, asyncpg.InsufficientResourcesError):
        what = "the database is out of connections or resources"
    elif isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        what = "the database is read-only (a failover under way)"
    elif isinstance(exc, asyncpg.OperatorInterventionError) or session_ended_unread(exc):
        what = "the database ended the request's session (a shutdown or restart)"
    else:
        what = "the database is unreachable"
    return f"{what}; nothing was stored, send the request again"
