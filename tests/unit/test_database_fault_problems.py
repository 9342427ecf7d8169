"""A database fault that passes by itself is a 503 ``unavailable`` with ``Retry-After`` from
every API; a programming error stays a 500 (docs/reliability.md, "A database fault", #12).
The consumers and the relay retry the same list (one source: postgres/faults.py)."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import httpx
import pytest
from fastapi import FastAPI

from branchline_shared.eventstore.ports import ConcurrencyError, LocksDeadlocked
from branchline_shared.http.problems import PROBLEM_JSON, install_problem_handlers
from branchline_shared.kafka import consuming
from branchline_shared.postgres.faults import CommitOutcomeUnknown, is_transient_database_fault

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

TRANSIENT = [
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CrashShutdownError("terminating connection because of crash of another process"),
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.IdleSessionTimeoutError("terminating connection due to idle-session timeout"),
    asyncpg.IdleInTransactionSessionTimeoutError("idle-in-transaction timeout"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.OutOfMemoryError("out of memory"),
    asyncpg.DiskFullError("could not extend file"),
    asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    asyncpg.SerializationError("could not serialize access"),
    asyncpg.DeadlockDetectedError("deadlock detected"),
    asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
    asyncpg.InterfaceError("pool is closing"),
    OSError("connection refused"),
    TimeoutError(),
    # asyncpg's words for an operation started on a connection whose session the server
    # ended, its error read and its close not yet (postgres/faults.py, #12)
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
]
BUGS = [
    asyncpg.UndefinedColumnError('column "x" does not exist'),
    asyncpg.PostgresSyntaxError("syntax error at or near"),
    asyncpg.InvalidTextRepresentationError("invalid input syntax for type uuid"),
    asyncpg.NumericValueOutOfRangeError("numeric field overflow"),
    asyncpg.UniqueViolationError("duplicate key value"),
    asyncpg.DatabaseDroppedError("database is being dropped"),
    asyncpg.StatementCompletionUnknownError("completion unknown"),
    asyncpg_base.DataError("invalid input for query argument $1"),  # client-side, a bug
    # asyncpg's own unexpected states: not the ended session's (its state 2)
    asyncpg.InternalClientError("unknown error in protocol implementation"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (11) is in progress"),
    ValueError("a bug"),
]


def served(error: BaseException) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/write")
    async def write() -> None:
        raise error

    return app


async def answer(error: BaseException) -> httpx.Response:
    transport = httpx.ASGITransport(app=served(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/write")


def assert_unavailable(response: httpx.Response, error: BaseException) -> None:
    """503 problem+json ``unavailable``, to be sent again, never quoting the server's words."""
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert body["type"] == "https://branchline.dev/problems/unavailable"
    assert body["detail"].endswith("nothing was stored, send the request again")
    assert str(error) not in body["detail"] or not str(error)


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
async def test_a_transient_database_fault_is_503_unavailable_with_retry_after(
    error: BaseException,
) -> None:
    assert_unavailable(await answer(error), error)
    assert is_transient_database_fault(error)
    assert consuming.is_transient(error)  # the consumers and the relay retry it too


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
async def test_a_programming_error_stays_500_internal(error: BaseException) -> None:
    response = await answer(error)
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "retry-after" not in response.headers
    assert response.json()["type"] == "https://branchline.dev/problems/internal"
    assert not is_transient_database_fault(error)
    assert not consuming.is_transient(error)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (asyncpg.QueryCanceledError("x"), "cancelled the request's statement"),
        (asyncpg.AdminShutdownError("x"), "ended the request's session"),
        (
            asyncpg.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            "ended the request's session",
        ),
        (asyncpg.TooManyConnectionsError("x"), "out of connections or resources"),
        (asyncpg.ReadOnlySQLTransactionError("x"), "read-only"),
        (asyncpg.DeadlockDetectedError("x"), "conflicted with others"),
        (OSError("x"), "unreachable"),
    ],
)
async def test_the_detail_names_the_kind_of_fault(error: BaseException, words: str) -> None:
    assert words in (await answer(error)).json()["detail"]


@pytest.mark.parametrize(
    "error",
    [LocksDeadlocked("deadlock detected"), ConcurrencyError("event id already stored")],
    ids=lambda e: type(e).__name__,
)
async def test_a_conflict_that_outlasted_the_reruns_is_503_unavailable(
    error: BaseException,
) -> None:
    # The event store's conflicts are rerun by their callers a bounded number of times (a lock
    # cycle on event ids, an id taken meanwhile, docs/intake.md "Lock order"); past that bound
    # the request was rolled back every time: a 503 to send again, not a 500.
    assert_unavailable(await answer(error), error)


async def test_a_commit_of_unknown_outcome_is_503_outcome_unknown() -> None:
    # A connection lost during COMMIT, the store not askable after (postgres/commit_outcome.py):
    # not "unavailable", whose promise is that nothing was stored (#12, docs/api.md).
    error = CommitOutcomeUnknown("lost during COMMIT")
    response = await answer(error)
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert body["type"] == "https://branchline.dev/problems/outcome-unknown"
    assert body["title"] == "Outcome unknown"
    assert "nothing was stored" not in body["detail"]
    assert "same event_ids" in body["detail"]
    assert is_transient_database_fault(error)
    assert consuming.is_transient(error)  # a consumer retries it, as the lost connection


@pytest.mark.parametrize(
    ("fault", "outage"),
    [
        (asyncpg.QueryCanceledError("canceling statement due to user request"), True),
        (asyncpg.AdminShutdownError("terminating connection"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (OSError("connection reset"), True),
        (asyncpg.InsufficientResourcesError("too many connections"), True),
        (asyncpg.DeadlockDetectedError("deadlock detected"), False),  # a conflict: rerun
        (asyncpg.SerializationError("could not serialize"), False),
        (asyncpg.LockNotAvailableError("lock timeout"), False),
        (asyncpg.UniqueViolationError("duplicate key"), False),  # not transient at all
        (ValueError("a bug"), False),
    ],
)
def test_an_outage_is_a_transient_fault_that_is_no_conflict(fault: Exception, outage: bool) -> None:
    """A guessed group's write refused by an outage is answered 503, not run again the
    ordinary way; a conflict still runs it again (#12, docs/intake.md)."""
    from branchline_shared.postgres.faults import is_outage

    assert is_outage(fault) is outage
