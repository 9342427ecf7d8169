"""What a connection lost during ``COMMIT`` is answered: decided from what the store holds,
asked on a fresh connection (#12, ``postgres/commit_outcome.py``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from branchline_shared.http.problems import unavailable_problem
from branchline_shared.postgres.commit_outcome import (
    CommitOutcome,
    CommitOutcomeUnknown,
    IdsTakenAfterLostCommit,
    Written,
    after_lost_commit,
    judged,
    lost_in_flight,
)
from branchline_shared.postgres.faults import is_transient_database_fault

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


@pytest.mark.parametrize(
    ("written", "found", "taken", "outcome"),
    [
        (3, 3, 0, CommitOutcome.COMMITTED),
        (1, 1, 0, CommitOutcome.COMMITTED),
        (3, 0, 0, CommitOutcome.NOT_COMMITTED),
        (3, 1, 0, CommitOutcome.UNKNOWN),  # one transaction's rows are all there or none
        (3, None, 0, CommitOutcome.UNKNOWN),  # the store could not be asked
        (0, 0, 0, CommitOutcome.UNKNOWN),  # nothing to ask by
        # Another writer's row under one of its ids: it did not commit (the ids are unique).
        (1, 0, 1, CommitOutcome.TAKEN),
        (3, 0, 1, CommitOutcome.TAKEN),
        (3, 2, 1, CommitOutcome.UNKNOWN),  # its own rows and another's: not understood
    ],
)
def test_the_outcome_is_what_the_store_holds(
    written: int, found: int | None, taken: int, outcome: Any
) -> None:
    assert judged(written, found, taken) is outcome


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_a_lost_connection_is_no_answer(exc: BaseException) -> None:
    assert lost_in_flight(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.SerializationError("could not serialize"),  # the server answered: rolled back
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.exceptions._base.DataError("a value the codec refuses"),
        ValueError("a bug"),
    ],
)
def test_an_answer_from_the_server_or_a_bug_is_not_a_lost_commit(exc: BaseException) -> None:
    assert not lost_in_flight(exc)


class FakePool:
    """A pool whose connection answers the two questions: the lost session's end
    (``session``: "gone", already ended; "ended", ended by the question; "alive", not ended
    within the wait) and the rows stored: the transaction's own (``stored``) and another
    writer's under the same ids (``others``)."""

    def __init__(
        self,
        stored: set[uuid.UUID] | None = None,
        fails: BaseException | None = None,
        session: str = "gone",
        others: set[uuid.UUID] | None = None,
    ):
        self.stored = stored or set()
        self.others = others or set()
        self.fails = fails
        self.session = session
        self.asked: list[Any] = []

    def get_server_pid(self) -> int:
        return 1  # a new session, not the lost one

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakePool]:
        if self.fails is not None:
            raise self.fails
        yield self

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if "pg_terminate_backend" in sql:
            self.asked.append(("end", args[0]))
            return {"gone": [], "ended": [(True,)], "alive": [(False,)]}[self.session]
        ids, positions, envelopes = args
        self.asked.append(ids)
        self.told = list(zip(positions, envelopes, strict=True))
        return [
            {"event_id": i, "global_position": n, "own": i in self.stored}
            for n, i in enumerate(ids, 1)
            if i in self.stored or i in self.others
        ]


LOST = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
SESSION = 4242  # the lost connection's server process


async def test_committed_the_positions_are_returned() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    pool = FakePool(stored=set(ids))
    found = await after_lost_commit(pool, ids, LOST, session=SESSION)  # type: ignore[arg-type]
    assert found == {ids[0]: 1, ids[1]: 2}
    assert pool.asked == [("end", SESSION), ids]


async def test_not_committed_the_lost_connection_is_raised_as_it_was() -> None:
    with pytest.raises(asyncpg.ConnectionDoesNotExistError) as raised:
        await after_lost_commit(FakePool(), [uuid.uuid4()], LOST, session=SESSION)  # type: ignore[arg-type]
    assert raised.value is LOST  # the 503 "unavailable", nothing stored


@pytest.mark.parametrize(
    "fails", [ConnectionRefusedError(), TimeoutError(), asyncpg.CannotConnectNowError("starting")]
)
async def test_a_store_that_cannot_be_asked_makes_the_outcome_unknown(
    fails: BaseException,
) -> None:
    with pytest.raises(CommitOutcomeUnknown) as raised:
        await after_lost_commit(FakePool(fails=fails), [uuid.uuid4()], LOST, session=SESSION)  # type: ignore[arg-type]
    assert raised.value.__cause__ is LOST
    # Transient (a consumer retries it), answered as its own 503 problem.
    assert is_transient_database_fault(raised.value)
    problem = unavailable_problem(raised.value)
    assert (problem.status, problem.kind) == (503, "outcome-unknown")
    assert problem.headers == {"Retry-After": "2"}
    assert "nothing was stored" not in problem.detail
    assert "same event_ids" in problem.detail


async def test_part_of_one_transaction_stored_is_not_claimed_either_way() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    with pytest.raises(CommitOutcomeUnknown):
        await after_lost_commit(FakePool(stored={ids[0]}), ids, LOST, session=SESSION)  # type: ignore[arg-type]


async def test_a_bug_while_asking_is_not_hidden_as_unknown() -> None:
    with pytest.raises(ValueError, match="a bug"):
        await after_lost_commit(
            FakePool(fails=ValueError("a bug")), [uuid.uuid4()], LOST, session=SESSION
        )  # type: ignore[arg-type]


@pytest.mark.parametrize("session", ["gone", "ended"])
async def test_the_lost_session_is_ended_before_the_store_is_asked(session: str) -> None:
    """A ``COMMIT`` that reached the server may still be flushing when the client sees the
    loss: its rows are not visible yet. Only once its session has ended is "none stored"
    final."""
    pool = FakePool(session=session)
    ids = [uuid.uuid4()]
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await after_lost_commit(pool, ids, LOST, session=SESSION)  # type: ignore[arg-type]
    assert pool.asked == [("end", SESSION), ids]


async def test_a_session_that_did_not_end_leaves_none_stored_unknown() -> None:
    with pytest.raises(CommitOutcomeUnknown):
        await after_lost_commit(
            FakePool(session="alive"),  # type: ignore[arg-type]
            [uuid.uuid4()],
            LOST,
            session=SESSION,
        )


async def test_a_session_that_did_not_end_with_every_row_stored_is_committed() -> None:
    ids = [uuid.uuid4()]
    pool = FakePool(stored=set(ids), session="alive")
    assert await after_lost_commit(pool, ids, LOST, session=SESSION) == {ids[0]: 1}  # type: ignore[arg-type]


async def test_an_unknown_session_leaves_none_stored_unknown() -> None:
    pool = FakePool()
    with pytest.raises(CommitOutcomeUnknown):
        await after_lost_commit(pool, [uuid.uuid4()], LOST, session=None)  # type: ignore[arg-type]
    assert all(asked[0] != "end" for asked in pool.asked)


async def test_the_asking_sessions_own_is_not_ended() -> None:
    """A pool may hand back the very session it lost sight of if it was never closed: it
    runs nothing else while it asks, so it is not ended (it would end the question)."""
    ids = [uuid.uuid4()]
    pool = FakePool()
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await after_lost_commit(pool, ids, LOST, session=1)  # type: ignore[arg-type]
    assert pool.asked == [ids]


def test_an_unknown_outcome_names_ids_by_the_submission_itself() -> None:
    # Named by identity (the object the caller sent): an equal submission of another caller
    # in the same group is not told this one's id.
    unknown = CommitOutcomeUnknown("lost")
    sent, equal, event_id = {"type": "x"}, {"type": "x"}, uuid.uuid4()
    unknown.name(sent, event_id)
    assert unknown.event_id_of(sent) == event_id
    assert unknown.event_id_of(equal) is None


@pytest.mark.parametrize("session", ["gone", "alive"])
async def test_another_writers_row_under_its_id_is_not_its_commit(session: str) -> None:
    """A caller's own id, resent meanwhile by another writer: the row found under it is that
    writer's, so the lost transaction did not commit (old: answered as committed, with the
    other writer's position). Whether its session ended does not matter: its own insert of
    that id could not stand beside another writer's committed one."""
    ids = [uuid.uuid4(), uuid.uuid4()]
    pool = FakePool(others={ids[0]}, session=session)
    written = [Written(ids[0], 7), Written(ids[1], envelope="{}")]
    with pytest.raises(IdsTakenAfterLostCommit) as raised:
        await after_lost_commit(pool, written, LOST, session=SESSION)  # type: ignore[arg-type]
    assert raised.value.__cause__ is LOST
    assert pool.told == [(7, None), (None, "{}")]  # what tells its own rows, sent with the ids


async def test_its_own_rows_and_another_writers_are_not_claimed_either_way() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    with pytest.raises(CommitOutcomeUnknown):
        await after_lost_commit(
            FakePool(stored={ids[0]}, others={ids[1]}),  # type: ignore[arg-type]
            [Written(i, n) for n, i in enumerate(ids, 1)],
            LOST,
            session=SESSION,
        )
