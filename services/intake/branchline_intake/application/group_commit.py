"""Group commit: concurrent submissions share one transaction and one WAL flush.

One event per transaction caps a writer at the rate the database can flush its log, and
spends most of each request on round trips (begin, lock, read, insert, commit). Here a
request that arrives while a group is being written waits for the next group ("whoever
waits, joins"; an optional short window gathers more under light load), and a group is one
transaction: its streams are locked once, in one global order, then each caller's items are
decided and staged by :func:`submit_events` in a savepoint of its own, and the whole group is
committed at once. Every request is answered only after the commit that made its events
durable, with its own outcomes: a refused item is an outcome, never an abort; a caller whose
unit of work fails (a bug, a lost race) fails alone; a failed commit fails the whole group,
and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from branchline_intake.application.outcomes import Outcome, written_as
from branchline_intake.application.privacy import ERASURE_REQUESTED
from branchline_intake.application.store_views import ReadsFromStore
from branchline_intake.application.submit import (
    ID_ORDER_RERUNS,
    LOCK_CYCLE_RERUNS,
    MAX_LOCK_CYCLES,
    REFUSAL_LOCK_RERUNS,
    IntakeContext,
    refusal_event_id,
    refusal_stream_id,
    submit_callers,
    submit_events,
)
from branchline_shared.events.envelope import SubmittedEvent, subject_stream_id
from branchline_shared.eventstore.ports import (
    EventIdsBusy,
    EventStore,
    GroupCommitStore,
    GuessingStore,
    GuessingUnitOfWork,
    GuessWrong,
    IdsTakenAfterLostCommit,
    LocksDeadlocked,
    RefusalRaced,
    SharedTransaction,
    StreamsBusy,
    UnitOfWork,
)
from branchline_shared.postgres.faults import CommitOutcomeUnknown, is_outage

log = logging.getLogger(__name__)

GROUP_EVENTS = Histogram(
    "branchline_intake_group_commit_events",
    "Events written per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

GROUP_GUESSES = Counter(
    "branchline_intake_group_commit_guesses",
    "Groups tried as new streams in one self-committing statement: written, or run the "
    "ordinary way after a guess that could not stand",
    ["outcome"],
)

KEPT_OUT = Counter(
    "branchline_intake_group_commit_kept_out",
    "Requests of a guessed group sent the ordinary way while the rest of it is guessed: "
    "resending an event this process remembers among its stream's latest, or found by the "
    "store, "
    "after the guessed statement was refused, to hold its event id or its stream otherwise "
    "than guessed (named), or refused on the guess, a refusal to record (refusal) (the rest "
    "guessed again, once)",
    ["reason"],
)

Submit = Callable[..., Awaitable[list[Outcome]]]


@dataclass
class _Waiting:
    items: Sequence[SubmittedEvent]
    caller: dict[str, Any]  # submit_events' keyword arguments: who sent the items
    answer: asyncio.Future[list[Outcome]]


class GroupCommitter:
    """Submits like :func:`submit_events`, sharing transactions between concurrent calls.

    ``max_events`` bounds a group; ``window_s`` (0 by default) holds a group open that long
    before it is written; ``writers`` groups are written at once (one computes while another
    waits for the database); ``guess_new_streams``: a group that may be all new streams is
    first tried as such, in one round trip (:meth:`_guessed`); ``guess_several_callers``:
    so is a group of several callers, each on streams of its own (:meth:`_guessed_jointly`)."""

    def __init__(
        self,
        ctx: IntakeContext,
        *,
        max_events: int = 500,
        window_s: float = 0.0,
        writers: int = 2,
        guess_new_streams: bool = True,
        guess_several_callers: bool = True,
        submit: Submit = submit_events,
    ) -> None:
        self._ctx = ctx
        self._max_events = max_events
        self._window_s = window_s
        self._writers = writers
        self._submit = submit
        self._queue: list[_Waiting] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0  # writers running; changed only where no await can interleave
        store = ctx.store
        self._store: GroupCommitStore | None = (
            store if isinstance(store, GroupCommitStore) and writers > 0 else None
        )
        self._guessing: GuessingStore | None = (
            store
            if guess_new_streams and self._store is not None and isinstance(store, GuessingStore)
            else None
        )
        self._several = guess_several_callers

    async def submit(self, items: Sequence[SubmittedEvent], **caller: Any) -> list[Outcome]:
        if self._store is None:  # a store without shared transactions: one call each
            return await self._submit(self._ctx, items, **caller)
        answer: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(items, caller, answer))
        if self._active < self._writers:
            self._active += 1
            task = asyncio.create_task(self._write_groups(), name="intake-group-commit")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # The group is written whether or not this request is still waiting for its answer
        # (a client that hangs up does not cancel the others' transaction): the writer is a
        # task of its own, and a cancelled request cancels only its own future, which the
        # writer then leaves unanswered (_answer). So no shield around it (#12: a future,
        # a task step and a callback less per request).
        return await answer

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Let the groups being written finish (shutdown), bounded."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def _write_groups(self) -> None:
        try:
            while self._queue:
                if self._window_s > 0:
                    await asyncio.sleep(self._window_s)
                group = self._take_group()
                if group:
                    await self._write(group)
        finally:
            # In the same step as the empty-queue check: a request queued after it starts a
            # new writer instead of waiting for this one.
            self._active -= 1

    def _take_group(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        count = 0
        while self._queue and (not group or count + len(self._queue[0].items) <= self._max_events):
            waiting = self._queue.pop(0)
            group.append(waiting)
            count += len(waiting.items)
        return group

    async def _write(self, group: list[_Waiting]) -> None:
        GROUP_EVENTS.observe(sum(len(waiting.items) for waiting in group))
        try:
            results = await self._runs(group)
        except Exception as exc:  # the commit failed: nothing of this group is stored
            log.warning("group commit failed", extra={"error": repr(exc), "size": len(group)})
            for waiting in group:
                _answer(waiting, exc)
            return
        for waiting, result in results:
            _answer(waiting, result)

    async def _runs(
        self, group: list[_Waiting]
    ) -> list[tuple[_Waiting, list[Outcome] | BaseException]]:
        """The group's transaction, run again (after a rollback, nothing answered yet) when
        its first run cannot stand. The callers that may be guessed are tried first as one
        statement; when it is refused and the store then names some of them (their event ids
        stored, their streams not as guessed: resends another process stored, a stale
        remembered stream, Rounds 26-27, #12), or its decisions refuse some of them on the
        guess (a refusal to record, its refusal streams named: Round 28), those go the
        ordinary way and the others are guessed again; a guess that fails otherwise, or a
        third time, sends the rest of the group the ordinary way. A second guess may be
        refused for what the first did not reach (Round 29, #12): the first failed on a
        refusal to record before its statement was sent, the second's statement on a resend
        another process stored; its named callers go the ordinary way too and the rest is
        guessed a third time (at most :data:`_GUESSES` statements)."""
        callers, rest = self._guessable(group) if self._guessing is not None else (None, group)
        if callers is not None and self._guessing is not None:
            decider = self._ctx.decider
            recall = getattr(decider, "recall", None)
            restore = getattr(decider, "restore", None)
            # What the decider remembers of the guessed streams before the guess decides on
            # them: a guess that wrote nothing is forgotten, so a guess again stands on what
            # was remembered before it (Round 26, #12).
            recalled = (
                recall(
                    {
                        subject_stream_id(i.subject, i.subject_id)
                        for w in _waiting_of(callers)
                        for i in w.items
                    }
                )
                if recall is not None
                else None
            )
            for attempt in range(1, _GUESSES + 1):
                try:
                    guessed = await self._guessed_callers(callers, self._guessing)
                except GuessWrong as wrong:
                    GROUP_GUESSES.labels(outcome="wrong").inc()
                    if recalled is not None and restore is not None:
                        restore(recalled)
                    named = (
                        _named(callers, wrong) if attempt < _GUESSES and self._several else set()
                    )
                    if not named or len(named) == len(callers):
                        break
                    # After the refusal the store named every caller's event id it holds and
                    # every stream it holds otherwise than guessed (resends accepted by
                    # another process, a stale remembered stream: Round 27, #12), or the
                    # decisions named the refusal streams they would write to (a refusal to
                    # record: a refused event resent, any refusal decided on the guess; Round
                    # 28): those callers go the ordinary way, where their ids are looked up
                    # and their items decided again on what is stored (D-rules as ever); the
                    # others, on streams none of them uses, are guessed again, once.
                    KEPT_OUT.labels(reason="refusal" if wrong.refusal_streams else "named").inc(
                        sum(len(callers[index][1]) for index in named)
                    )
                    callers = [c for index, c in enumerate(callers) if index not in named]
                    chosen = {id(w) for w in _waiting_of(callers)}
                    rest = [w for w in group if id(w) not in chosen]
                else:
                    GROUP_GUESSES.labels(outcome="written").inc()
                    if not rest:
                        return guessed
                    # A mixed group (#12): the callers that could stand on the guess are
                    # written and committed first, as if they had come first; the others, on
                    # streams none of those writes or reads, run the ordinary way after it.
                    return guessed + await self._ordinary(rest)
        return await self._ordinary(group)

    async def _guessed_callers(
        self, callers: list[tuple[dict[str, Any], list[_Waiting]]], store: GuessingStore
    ) -> list[tuple[_Waiting, list[Outcome] | BaseException]]:
        if len(callers) == 1:
            return await self._guessed(callers[0][1], store)
        return await self._guessed_jointly(callers, store)

    async def _ordinary(
        self, group: list[_Waiting]
    ) -> list[tuple[_Waiting, list[Outcome] | BaseException]]:
        """The group's transaction, each caller in a savepoint of its own (one caller alone
        without one), run again (after a rollback, nothing answered yet) when its first run
        cannot stand."""
        refusal_locks_first = False
        alone = True
        cycles = 0
        while True:
            try:
                return await self._transaction(
                    group, refusal_locks_first=refusal_locks_first, alone=alone
                )
            except LocksDeadlocked:
                # The server broke a lock cycle (docs/intake.md, "Lock order"): with a writer
                # of an older release while the group took its streams, or with a writer of
                # the same event ids while a caller wrote them: all rolled back, nothing
                # answered; run again, a bounded number of times.
                cycles += 1
                if cycles == MAX_LOCK_CYCLES:
                    raise
                LOCK_CYCLE_RERUNS.labels(path="group").inc()
                log.warning("a lock cycle was broken; the group runs again")
            except RefusalRaced:
                # A caller's refusal of a sent id, or its acceptance under one, met the other
                # recorded meanwhile by another writer (#12, D-05): rolled back, nothing
                # answered; run again, decided on what is stored (409, or a resend's answer).
                cycles += 1
                if cycles == MAX_LOCK_CYCLES:
                    raise
                log.warning("an event id was refused and accepted at once; the group runs again")
            except IdsTakenAfterLostCommit:
                # The group's COMMIT was lost with its connection and it did not commit: the
                # store holds another writer's events under some of its callers' ids (a
                # concurrent resend, stored meanwhile). Nothing of the group is stored or
                # answered: run it again, decided on what is stored, so those ids are
                # answered as resends are (a duplicate, or idempotency-conflict), not as
                # accepted (Round 25, #12, docs/reliability.md).
                cycles += 1
                if cycles == MAX_LOCK_CYCLES:
                    raise
                log.warning("a lost commit's event ids were another writer's; the group runs again")
            except StreamsBusy:
                # A refusal stream was held by another transaction or did not exist yet. Run
                # again with every refusal stream of the group locked up front, in the one
                # global order, as before #12 (docs/intake.md, "Lock order"); that run cannot
                # raise it.
                if refusal_locks_first:
                    raise
                REFUSAL_LOCK_RERUNS.labels(path="group").inc()
                refusal_locks_first = True
            except _CallerAlone:
                # The group's only caller failed without a savepoint: run again with one,
                # which answers it exactly as a caller among others is answered (#12).
                alone = False
            except EventIdsBusy:
                # A caller after the first met another writer's uncommitted event id, below
                # one an earlier caller wrote, and did not wait (docs/intake.md, "Event ids
                # are not streams"): all rolled back, nothing answered. Each caller runs
                # again in a transaction of its own, whose one write inserts its ids in id
                # order and may wait; a caller alone never raises it again.
                callers = _by_caller(group)
                if len(callers) == 1:
                    raise
                ID_ORDER_RERUNS.labels(path="group").inc()
                results: list[tuple[_Waiting, list[Outcome] | BaseException]] = []
                for _, members in callers:
                    results += await self._ordinary(members)
                return results

    def _guessable(
        self, group: list[_Waiting]
    ) -> tuple[list[tuple[dict[str, Any], list[_Waiting]]] | None, list[_Waiting]]:
        """The group's callers that may be written by one statement, and the rest of the
        group, for the ordinary way (``None`` and the whole group: not guessable). Written
        by one statement: the real ``submit_events``, one caller (its outcomes come from one
        decision) or several whose items' streams are each one caller's (each decides on its
        own streams, so none decides on what another writes or reads: ``_guessed_jointly``;
        with ``guess_several_callers``, a mixed group's callers that qualify, the others
        touching none of their streams, #12), no stream read besides its own (a read lock:
        D-13, D-14, D-16), no erasure request (its restriction is registered after the write:
        docs/privacy.md), and no stream that holds events unless the decider remembers it
        with its last event (``remembered_tail``): such a stream is taken at its remembered
        version, and the write checks that it still ends with that event (#12). The rest is
        checked by deciding on the guess (``GuessingUnitOfWork``) and by the write itself.
        An event id the caller sent qualifies too (Round 25, #12): the guess is that no id of
        the group is stored, and the write's unique index on ``es_events.event_id`` checks
        it, so a resent id fails the statement whole and the group is decided again the
        ordinary way, where the lookup answers it (a duplicate, or ``idempotency-conflict``);
        a lookup and a savepoint and a write per caller cost twice the intake CPU per event.
        A request that resends an event its process remembers among the latest of its
        stream (the same id; Round 26 the last one, Round 27 up to ``RECENT_IDS``) is kept
        out (#12): it goes the ordinary way with the rest, and
        its caller's other requests may still be guessed (a caller's requests are units of
        their own here, resends apart); a resend stored by another process is named by the
        statement's refusal instead (:meth:`_runs`)."""
        if self._submit is not submit_events:
            # Only submit_events is known to do nothing after its write that can fail (its
            # restrictions are registered for erasure requests alone, excluded here): an
            # error after a committed write could not be rolled back with the group.
            return None, group
        first = group[0].caller
        if not self._several and any(w.caller is not first and w.caller != first for w in group):
            return None, group
        decider = self._ctx.decider
        remembered = getattr(decider, "remembered", None)
        # A remembered stream whose history the guess can stand on (its last event kept).
        tail = getattr(decider, "remembered_tail", None)
        # One of a remembered stream's latest event ids, not only its last (Round 27, #12).
        sent_again = getattr(decider, "remembers_id", None)
        # Each caller's requests, those that resend an event this process remembers among
        # the latest of its stream apart (Round 26; not only the last since Round 27, #12):
        # they go the ordinary way, whose lookup answers them (a duplicate, or
        # idempotency-conflict); deciding them on the guess refuses them (D-09 for a
        # registration: a refusal to record, which no statement checks) and the whole
        # group's guess is wrong.
        units: list[tuple[dict[str, Any], list[_Waiting]]] = []
        fit: list[bool] = []
        users: dict[str, set[int]] = {}  # the units that write or read each stream
        resent = 0
        for caller, members in _by_caller(group):
            parts: dict[bool, tuple[list[_Waiting], list[set[str]], list[bool]]] = {}
            for waiting in members:
                fits = True
                again = False
                streams: set[str] = set()
                for item in waiting.items:
                    stream = subject_stream_id(item.subject, item.subject_id)
                    streams.add(stream)
                    read = decider.references(item)
                    streams.update(read)
                    known = remembered(stream) if remembered is not None else None
                    if (
                        item.type == ERASURE_REQUESTED
                        or read
                        or (known is not None and (tail is None or tail(stream) is None))
                    ):
                        fits = False
                    if (
                        known is not None
                        and item.event_id is not None
                        and (
                            known[1] == item.event_id
                            or (sent_again is not None and sent_again(stream, item.event_id))
                        )
                    ):
                        again = True
                members_, streams_, fits_ = parts.setdefault(again, ([], [], []))
                members_.append(waiting)
                streams_.append(streams)
                fits_.append(fits and not again)
            for again, (members_, streams_, fits_) in sorted(parts.items()):
                index = len(units)
                units.append((caller, members_))
                fit.append(all(fits_))
                for used in streams_:
                    for stream in used:
                        users.setdefault(stream, set()).add(index)
                if again:
                    resent += len(members_)
        for used_by in users.values():  # a stream two units use: neither stands alone
            if len(used_by) > 1:
                for index in used_by:
                    fit[index] = False
        if all(fit):
            return units, []
        if not self._several or not any(fit):
            return None, group
        if resent:
            KEPT_OUT.labels(reason="remembered").inc(resent)
        chosen = {id(w) for (_, members), ok in zip(units, fit, strict=True) if ok for w in members}
        return (
            [c for c, ok in zip(units, fit, strict=True) if ok],
            [w for w in group if id(w) not in chosen],
        )

    async def _guessed(
        self, group: list[_Waiting], store: GuessingStore
    ) -> list[tuple[_Waiting, list[Outcome] | BaseException]]:
        """The group decided as if each of its streams were new (no events, version 0) and
        written by one statement that is its own transaction (no ``BEGIN``, no ``COMMIT``:
        one round trip, where a group takes three), which creates those streams and fails
        whole if one exists (#12). Raises :class:`GuessWrong` when nothing was written: a
        stream or a sent event id existed, or the decisions needed what one statement cannot
        give (a read lock, a refusal to record): the group then runs the ordinary way,
        decided again from what is stored. Every caller is answered after that statement
        committed, as after a group's ``COMMIT``."""
        items = [item for waiting in group for item in waiting.items]
        unit = _GuessingOnce(store, self._ctx.store)
        ctx = dataclasses.replace(self._ctx, store=unit, in_group=True)
        try:
            outcomes = await self._submit(ctx, items, **group[0].caller)
        except GuessWrong:
            raise
        except Exception as exc:
            if not unit.sent and not is_outage(exc):  # nothing written: the ordinary way
                raise GuessWrong(repr(exc)) from exc
            # The write was sent and may have committed, or the database refused it for an
            # outage (a cancel, a lost connection found not stored): its callers are
            # answered with the error, as when a group's COMMIT fails, and nothing is run
            # again (an operator's cancel, a statement_timeout, stand).
            return [(waiting, exc) for waiting in group]
        results: list[tuple[_Waiting, list[Outcome] | BaseException]] = []
        for waiting in group:
            results.append((waiting, outcomes[: len(waiting.items)]))
            outcomes = outcomes[len(waiting.items) :]
        return results

    async def _guessed_jointly(
        self, callers: list[tuple[dict[str, Any], list[_Waiting]]], store: GuessingStore
    ) -> list[tuple[_Waiting, list[Outcome] | BaseException]]:
        """:meth:`_guessed` for a group of several callers, each on streams of its own
        (``_guessable``): their items are checked per caller (each its own token: speaking
        rules, scope) and decided by one :func:`submit_callers` on one guessing unit of work,
        in the callers' order (the order, and so the positions, of the ordinary way's group),
        and written by its one statement. If any caller cannot stand on the guess
        (``GuessWrong``) or fails before that statement, none is written and
        :class:`GuessWrong` is raised, so the group runs the ordinary way, each caller in a
        savepoint of its own, decided again from what is stored (a failing caller fails alone
        there). Every caller is answered after the statement committed. One call for all the
        callers, not one ``submit_events`` task each (#12: that per-caller work made a group
        of 16 branch systems cost more per event than one token's)."""
        unit = _GuessingOnce(store, self._ctx.store)
        ctx = dataclasses.replace(self._ctx, store=unit, in_group=True)
        try:
            answers = await submit_callers(
                ctx,
                [
                    ([item for waiting in members for item in waiting.items], caller)
                    for caller, members in callers
                ],
            )
        except GuessWrong:
            raise
        except Exception as exc:
            if not unit.sent and not is_outage(exc):  # the ordinary way answers each caller
                raise GuessWrong(repr(exc)) from exc
            # The write was sent and may have committed, or the database refused it for an
            # outage: every caller is answered with the error, as when a group's COMMIT
            # fails, and nothing is run again.
            return [(waiting, exc) for _, members in callers for waiting in members]
        results: list[tuple[_Waiting, list[Outcome] | BaseException]] = []
        for (_, members), outcomes in zip(callers, answers, strict=True):
            for waiting in members:
                results.append((waiting, outcomes[: len(waiting.items)]))
                outcomes = outcomes[len(waiting.items) :]
        return results

    async def _transaction(
        self, group: list[_Waiting], *, refusal_locks_first: bool, alone: bool
    ) -> list[tuple[_Waiting, list[Outcome] | BaseException]]:
        assert self._store is not None
        results: list[tuple[_Waiting, list[Outcome] | BaseException]] = []
        try:
            async with self._store.shared_transaction() as shared:
                await shared.lock_streams(
                    _streams_of(group, refusal_locks_first), shared=_read_by(group, self._ctx)
                )
                # Every event id the callers send (and their refusals' ids), looked up once
                # for the group instead of once per caller (#12).
                await shared.find_existing(_ids_of(group))
                ctx = dataclasses.replace(
                    self._ctx,
                    store=_SharedStore(shared, self._store),
                    in_group=True,
                    refusal_locks_first=refusal_locks_first,
                )
                callers = _by_caller(group)
                # A group of one caller takes no savepoint for it (one round trip less: every
                # group of the benchmark's single token, #12); if that caller fails, the whole
                # transaction is rolled back and run again with the savepoint (_runs).
                sole = alone and len(callers) == 1
                for caller, members in callers:
                    items = [item for waiting in members for item in waiting.items]
                    try:
                        async with shared.isolated(alone=sole):
                            outcomes = await self._submit(ctx, items, **caller)
                    except (StreamsBusy, LocksDeadlocked, EventIdsBusy):
                        raise  # the whole group runs again: see _ordinary
                    except Exception as exc:
                        if sole:
                            raise _CallerAlone from exc  # rolls the transaction back
                        # this caller's savepoint rolled back alone
                        results.extend((waiting, exc) for waiting in members)
                        continue
                    for waiting in members:
                        results.append((waiting, outcomes[: len(waiting.items)]))
                        outcomes = outcomes[len(waiting.items) :]
        except CommitOutcomeUnknown as unknown:
            # Its COMMIT lost, the store not askable: each caller is told the id each of its
            # events was written as (docs/api.md), from the outcomes decided before it.
            for waiting, result in results:
                if not isinstance(result, BaseException):
                    for item, outcome in zip(waiting.items, result, strict=True):
                        if (event_id := written_as(outcome)) is not None:
                            unknown.name(item, event_id)
            raise
        return results


def _waiting_of(callers: list[tuple[dict[str, Any], list[_Waiting]]]) -> list[_Waiting]:
    return [waiting for _, members in callers for waiting in members]


_GUESSES = 3
"""Guessed tries of a group at most (Round 29, #12): a first refused on a refusal to record
(nothing sent), a second on what its statement met (a resend another process stored), a
third for the rest; each names callers that then go the ordinary way, so a try that names
none, or all, ends the guessing."""


def _named(callers: list[tuple[dict[str, Any], list[_Waiting]]], wrong: GuessWrong) -> set[int]:
    """The callers (indexes) whose items' streams or own event ids the store named after a
    guessed statement was refused (``GuessWrong.taken_streams``, ``taken_ids``): an item's own
    id, or since Round 28 its recorded refusal's (a refused event's id sent again: the
    ordinary way compares the submissions); or whose items' refusal streams the decisions on
    the guess would have written a refusal to (``refusal_streams``, Round 28: nothing sent).
    Each caller's streams, its refusal streams with them, are its own (``_guessable``), so
    the others' decisions do not depend on the callers named."""
    if not wrong.taken_streams and not wrong.taken_ids and not wrong.refusal_streams:
        return set()
    return {
        index
        for index, (_, members) in enumerate(callers)
        for waiting in members
        for item in waiting.items
        if subject_stream_id(item.subject, item.subject_id) in wrong.taken_streams
        or (wrong.refusal_streams and refusal_stream_id(item) in wrong.refusal_streams)
        or (
            item.event_id is not None
            and (
                item.event_id in wrong.taken_ids
                or refusal_event_id(item.event_id) in wrong.taken_ids
            )
        )
    }


class _CallerAlone(Exception):
    """The only caller of a group run without a savepoint failed: run the group again."""


def _answer(waiting: _Waiting, result: list[Outcome] | BaseException) -> None:
    if waiting.answer.done():
        return
    if isinstance(result, BaseException):
        waiting.answer.set_exception(result)
    else:
        waiting.answer.set_result(result)


def _streams_of(group: list[_Waiting], refusal_locks_first: bool) -> list[str]:
    """The streams the group locks first: each item's subject stream, and with
    ``refusal_locks_first`` its refusal stream (else a refusal stream is locked only if a
    refusal is written to it: docs/intake.md, "Lock order")."""
    items = [item for waiting in group for item in waiting.items]
    streams = {subject_stream_id(i.subject, i.subject_id) for i in items}
    if refusal_locks_first:
        streams |= {refusal_stream_id(i) for i in items}
    return sorted(streams)


def _ids_of(group: list[_Waiting]) -> list[uuid.UUID]:
    """The ids the group's decisions look up: each item's own (an item without one gets a
    new random id, which nothing can hold yet) and the id its refusal would have (D-05)."""
    ids = [item.event_id for waiting in group for item in waiting.items if item.event_id]
    return ids + [refusal_event_id(i) for i in ids]


def _read_by(group: list[_Waiting], ctx: IntakeContext) -> list[str]:
    """The streams the group's decisions read besides their own (the product shelf, staff
    records: D-13, D-14, D-16), locked with the written ones in the one global order."""
    return sorted({s for w in group for item in w.items for s in ctx.decider.references(item)})


def _by_caller(group: list[_Waiting]) -> list[tuple[dict[str, Any], list[_Waiting]]]:
    """Requests of the same caller are decided in one call, in arrival order. Callers are
    found by a hash of their arguments (the token's actor and submitter are frozen models),
    not by comparing each with every other: a group of many callers cost O(callers²)
    comparisons of models (#12). One whose arguments cannot be hashed is compared as before."""
    callers: list[tuple[dict[str, Any], list[_Waiting]]] = []
    by_key: dict[tuple[tuple[str, Any], ...], list[_Waiting]] = {}
    for waiting in group:
        if callers and callers[-1][0] == waiting.caller:  # the usual run of one caller
            callers[-1][1].append(waiting)
            continue
        # Equal dicts, equal keys: the names are unique, so sorting never compares values.
        key: tuple[tuple[str, Any], ...] | None = tuple(sorted(waiting.caller.items()))
        try:
            members = by_key.get(key)  # type: ignore[arg-type]
        except TypeError:  # an argument that cannot be hashed
            key = None
            members = _same_caller(callers, waiting.caller)
        if members is None:
            members = []
            callers.append((waiting.caller, members))
            if key is not None:
                by_key[key] = members
        members.append(waiting)
    return callers


def _same_caller(
    callers: list[tuple[dict[str, Any], list[_Waiting]]], caller: dict[str, Any]
) -> list[_Waiting] | None:
    for known, members in callers:
        if known == caller:
            return members
    return None


class _GuessingOnce(ReadsFromStore):
    """The event store as a guessed group's caller sees it: its one unit of work is the
    store's guessing one; reads go to the store itself."""

    def __init__(self, store: GuessingStore, reads: EventStore) -> None:
        self._store = store
        self._reads = reads
        self._unit: GuessingUnitOfWork | None = None

    @property
    def sent(self) -> bool:
        return self._unit is not None and self._unit.sent

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        if self._unit is not None:  # a retry: not one statement any more
            raise GuessWrong("a second unit of work")
        async with self._store.guessing_unit_of_work() as unit:
            self._unit = unit
            yield unit


class _SharedStore(ReadsFromStore):
    """The event store as one group's callers see it: their units of work run inside the
    group's transaction; reads go to the store itself."""

    def __init__(self, shared: SharedTransaction, store: EventStore) -> None:
        self._shared = shared
        self._reads = store

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return self._shared.unit_of_work()
