"""Consumer plumbing: poison events to a dead-letter topic with the reason, transient faults
(database or broker away) retried without losing or skipping anything, offsets committed only
after the work is durable.

Kafka delivers at least once; consumers make that effectively once by recording applied event
ids in their own transaction (ADR-0003), so this loop may redeliver after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Gauge

from branchline_shared.background import cancel_and_wait, unless_set
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import ConcurrencyError
from branchline_shared.kafka.starting import ProducerStop, start_settled, stopped
from branchline_shared.kafka.wire import (
    PoisonEvent,
    SourcePosition,
    decode_event,
    source_position,
)
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.faults import (
    NEVER_TRANSIENT,
    TRANSIENT_DATABASE_FAULTS,
    session_ended_unread,
)
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.settings import CommonSettings

log = logging.getLogger(__name__)

CONSUMED = Counter("branchline_consumer_events_total", "Events handled", ["consumer"])
DEAD_LETTERED = Counter(
    "branchline_consumer_dead_letters_total", "Events dead-lettered", ["consumer"]
)
LOG_LOST = Counter(
    "branchline_consumer_log_lost_total",
    "Times the broker's log was found shorter than the consumer's position (rewound)",
    ["consumer"],
)
RETRIES = Counter("branchline_consumer_retries_total", "Transient failures retried", ["consumer"])
FETCH_WAIT = Gauge(
    "branchline_consumer_fetch_wait_ms",
    "The consumer's fetch wait at the broker now (raised when the broker answers nothing "
    "although records are there: tansu's memory store on a long log)",
    ["consumer"],
)
FETCH_WAIT_RAISES = Counter(
    "branchline_consumer_fetch_wait_raises_total",
    "Times the consumer's fetch wait was raised (see branchline_consumer_fetch_wait_ms)",
    ["consumer"],
)
FETCH_WAIT_CEILING_MS = 5_000  # the setting's own bound; far below aiokafka's request timeout
STOP_PATIENCE_S = 2.0
"""How long a stop lets the batch in hand go on before cancelling it (#12, Round 35): a batch
is done in well under a second, and one whose transaction waits on a lock held elsewhere (or a
slow statement, or retries with the database away) kept the stop to its bound
(``followup_worker_stop_timeout_s``, 30 s). Cancelled, asyncpg cancels the statement and the
transaction is rolled back; the fetch's offsets are not committed: it is redelivered to the
next start, where its ids decide (ADR-0003). The default of ``stop_patience_s``, as of the
setting ``consumer_stop_patience_s`` that the followup worker and the audit consumer pass
(Round 36); a consumer built without it (tools, tests) has this."""
ROUND_MS = 500  # a batch consumer's round: how long its getmany waits for records
MEAGRE_ROUND = 50  # fewer records than this in a round that leaves the consumer behind: starved
STARVED_LAG = 500  # ... if it leaves it at least this far behind (a batch consumer's round)
SETTLE_ROUNDS = 20  # rounds caught up in a row before a raised fetch wait is tried lower
MARKS_WITHIN_S = 1.0  # a look at positions and high watermarks; a rebalance can hold position()

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    # The database's list is the APIs' too (a 503 there, a retry here): one source.
    *TRANSIENT_DATABASE_FAULTS,
    TimeoutError,
    KafkaError,
)


TP = TypeVar("TP", bound=Hashable)


class FetchWait:
    """A consumer's fetch wait: the configured one, raised when the broker keeps answering
    nothing although the partition holds records beyond the position, and tried one step
    lower again once the consumer has stayed caught up.

    tansu's memory store (the dev stack's broker) lists every stored batch of a partition in
    each fetch that finds records, and stops listing, answering nothing, once the fetch's wait
    is used up: on a partition of about 100,000 one-record batches a 50 ms wait never gets a
    record again, and the consumer would stop there for good (docs/dev-stack.md, #12). After
    rounds in a row that brought nothing while the last high watermark lay beyond the
    position, for at least ``patience`` rounds and four times the wait (a fetch held at the
    log end, cut when a record comes, then tried again must not count: that overshoots), the
    wait doubles (up to ``ceiling_ms``).

    A raised wait costs a consumer at its log end up to half of it per event (tansu looks for
    new records again at half a held fetch's wait), so after ``settle`` rounds in a row that
    left it caught up the wait is halved (not below the configured one). A wait that starves
    the consumer again after such a step down is never stepped down to again: each lower wait
    gets one second try, so a log that only grows costs at most one short stall per wait on
    the way up, not a stall every ``settle`` rounds. Apache Kafka answers a fetch as soon as
    one record is there, so it never starves a consumer like this.
    """

    def __init__(
        self,
        configured_ms: int,
        *,
        ceiling_ms: int = FETCH_WAIT_CEILING_MS,
        patience: int = 2,
        round_ms: int = ROUND_MS,
        settle: int = SETTLE_ROUNDS,
    ) -> None:
        if configured_ms < 1 or patience < 1 or round_ms < 1 or settle < 1:
            raise ValueError("a fetch wait is at least 1 ms and patience at least one round")
        self.configured_ms = configured_ms
        self.ms = configured_ms
        self.ceiling_ms = max(ceiling_ms, configured_ms)
        self._patience = patience
        self._round_ms = round_ms
        self._settle = settle
        self._starved = 0
        self._caught_up = 0
        self._tried_again: set[int] = set()  # waits stepped down to once already
        self._refused: set[int] = set()  # ... which starved the consumer again: not tried again

    def rounds_needed(self) -> int:
        """Starved rounds, with no catching up between them, that raise the wait from what
        it is now."""
        return max(self._patience, -(-4 * self.ms // self._round_ms))

    @property
    def starving(self) -> bool:
        """Starved rounds were counted and the consumer has not caught up since."""
        return self._starved > 0

    @property
    def raised(self) -> bool:
        return self.ms > self.configured_ms

    def after_round(self, *, records: int, lag: int) -> bool:
        """Told each round's record count and the records its partitions' high watermarks lay
        beyond their positions after it (``lag``); True when the wait changed (``ms``). Only
        catching up forgives starved rounds. A round that brought fewer than
        :data:`MEAGRE_ROUND` records and leaves the consumer :data:`STARVED_LAG` or more behind
        counts as starved too: on a long log a wait just long enough answers now and then
        with a few records, and a consumer so fed would stay behind for good (a broker reading
        a backlog answers with up to a partition's bytes). A smaller lag is not: a consumer
        keeping up with a steady load is a fetch's few records behind after most rounds (the
        fetcher reads ahead while the batch is handled), which counted as starved raised the
        followup worker's wait to 800 ms in 20 s at 400 events/s on a short log (#12)."""
        if lag <= 0:
            self._starved = 0
            return self._settled()
        self._caught_up = 0
        if records >= MEAGRE_ROUND or (records > 0 and lag < STARVED_LAG):
            return False
        self._starved += 1
        if self._starved < self.rounds_needed() or self.ms >= self.ceiling_ms:
            return False
        self._starved = 0
        if self.ms in self._tried_again:
            self._refused.add(self.ms)
        self.ms = min(2 * self.ms, self.ceiling_ms)
        return True

    def _settled(self) -> bool:
        if not self.raised:
            return False
        self._caught_up += 1
        if self._caught_up < self._settle:
            return False
        self._caught_up = 0
        lower = max(self.ms // 2, self.configured_ms)
        if lower in self._refused:
            return False
        self._tried_again.add(lower)
        self.ms = lower
        return True

    def freeze(self, ms: int) -> None:
        """Keep ``ms`` for good (the consumer's wait cannot be changed)."""
        self.ms = self.configured_ms = self.ceiling_ms = ms
        self._starved = self._caught_up = 0

    def reset(self) -> None:
        """Back to the configured wait, everything learnt forgotten: the broker lost its log
        (tansu's memory store restarted), so the log is short again."""
        self.ms = self.configured_ms
        self._starved = self._caught_up = 0
        self._tried_again.clear()
        self._refused.clear()


def set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> bool:
    """Make ``consumer``'s next fetches wait ``wait_ms`` at the broker. aiokafka has no public
    way to change it on a running consumer: its fetcher reads ``_fetch_max_wait_ms`` for each
    request it builds (aiokafka 0.14, pinned; a test holds it to that). False if that changed."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    return True


async def partition_marks(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition] | None = None,
    *,
    within_s: float | None = None,
) -> dict[TopicPartition, tuple[int, int | None]]:
    """Each assigned partition's (of ``partitions``, if given) position and last known high
    watermark (None before a fetch reported one), as far as they can be read within
    ``within_s`` (:data:`MARKS_WITHIN_S`); a partition missing from the answer is looked at
    again next time.

    A rebalance can take a partition between ``assignment()`` and the questions: aiokafka 0.14's
    ``highwater`` then fails an ``assert`` (not a ``KafkaError``), and ``position`` raises
    ``IllegalStateError`` or, while the group has no assignment, waits for the next one for as
    long as the rebalance takes. Neither may end or hold up the consumer's loop."""
    marks: dict[TopicPartition, tuple[int, int | None]] = {}
    # One deadline for the whole look, not one timer per partition: the batch consumers look
    # after every meagre round, i.e. every round of a steady load, at each partition they hold
    # (#12, round 21: a timer set and cancelled per partition, about 5 µs each; a position()
    # that waits stops the look here as the old per-partition deadline, then spent, did).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(MARKS_WITHIN_S if within_s is None else within_s):
            for tp in list(consumer.assignment() if partitions is None else partitions):
                try:
                    position = await consumer.position(tp)
                    # no await between the check and the read: no rebalance can come between
                    if tp not in consumer.assignment():
                        continue
                    highwater = consumer.highwater(tp)
                except (AssertionError, KafkaError):
                    continue
                marks[tp] = (position, highwater)
    return marks


async def adapt_fetch_wait(
    consumer: AIOKafkaConsumer,
    fetch_wait: FetchWait,
    *,
    records: int,
    name: str,
    partitions: Iterable[TopicPartition] | None = None,
) -> None:
    """After a round of ``consumer`` that brought ``records``: tell ``fetch_wait`` whether the
    consumer is behind on ``partitions`` (default: all it is assigned) and apply the wait it
    then wants (:class:`FetchWait`). Shared by every reader of the topics (#12)."""
    asked = list(consumer.assignment() if partitions is None else partitions)
    marks = await partition_marks(consumer, asked)
    if len(marks) < len(asked):  # not known (a rebalance under way): neither starved nor not
        return
    lag = sum(
        max(0, highwater - position)
        for position, highwater in marks.values()
        if highwater is not None
    )
    before = fetch_wait.ms
    if not fetch_wait.after_round(records=records, lag=lag):
        return
    if not set_fetch_wait(consumer, fetch_wait.ms):
        fetch_wait.freeze(before)
        log.error("the consumer's fetch wait cannot be changed", extra={"consumer": name})
        return
    FETCH_WAIT.labels(name).set(fetch_wait.ms)
    if fetch_wait.ms > before:
        FETCH_WAIT_RAISES.labels(name).inc()
        log.warning(
            "the broker answers nothing although records are there; fetch wait raised",
            extra={"consumer": name, "from_ms": before, "to_ms": fetch_wait.ms},
        )
    else:
        log.info(
            "caught up for a while; fetch wait tried lower",
            extra={"consumer": name, "from_ms": before, "to_ms": fetch_wait.ms},
        )


def is_transient(exc: BaseException) -> bool:
    if session_ended_unread(exc):  # a lost connection, matched by message (postgres/faults.py)
        return True
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, NEVER_TRANSIENT)


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class DeadLetterAbandoned(asyncio.CancelledError):
    """A dead-letter send given up by the consumer's stop before the broker acknowledged it
    (:meth:`DeadLetters.abandon`). A cancellation, so that it passes every ``except
    Exception`` between the send and :meth:`BatchConsumer.run` (and a transaction around the
    send rolls back as for any cancel): the poison's offset is not committed, and the next
    start dead-letters it again (nothing lost; a send the broker did take meanwhile is
    dead-lettered twice, the replay's ids deciding, ADR-0003; #12)."""


class DeadLetters:
    """Publishes a poison message, untouched, to the consumer's dead-letter topic, with why."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        consumer: str,
        stop: ProducerStop | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._consumer = consumer
        # Told of every send until the broker acknowledged it: a producer's close after a send
        # that failed or was cut by the stop does not flush (the broker down, it only waited
        # its bound; the consumer did not commit past the poison, so it is sent again, #12).
        self._stop = stop
        # set by the consumer's stop: a send not acknowledged by then is given up (#12)
        self._abandoned = asyncio.Event()

    def abandon(self) -> None:
        """Give up the send in flight and any later one (:class:`DeadLetterAbandoned`): the
        consumer is stopping, and a send the broker does not acknowledge (down, or held)
        would otherwise keep retrying until the stop's bound cancels it (#12)."""
        self._abandoned.set()

    async def send(self, message: RawMessage, reason: str) -> None:
        headers = [
            *[(k, v) for k, v in message.headers if not k.startswith("dlq_")],
            ("dlq_reason", reason[:2000].encode()),
            ("dlq_consumer", self._consumer.encode()),
            ("dlq_source_topic", message.topic.encode()),
            ("dlq_source_partition", str(message.partition).encode()),
            ("dlq_source_offset", str(message.offset).encode()),
        ]
        if self._stop is not None:
            self._stop.sending()
        while True:
            try:
                await self._unless_abandoned(
                    self._producer.send_and_wait(
                        self._topic, value=message.value, key=message.key, headers=headers
                    ),
                    message,
                )
                break
            except KafkaError as exc:  # broker away: keep the message, try again
                log.warning(
                    "dead-letter publish failed; retrying", extra={"error": describe_error(exc)}
                )
                await self._unless_abandoned(asyncio.sleep(1.0), message)
        if self._stop is not None:
            self._stop.acknowledged()
        DEAD_LETTERED.labels(self._consumer).inc()
        log.error(
            "event dead-lettered",
            extra={"reason": reason, "topic": message.topic, "offset": message.offset},
        )

    async def _unless_abandoned(self, work: Awaitable[Any], message: RawMessage) -> Any:
        """``work``'s result, unless :meth:`abandon` comes first: then ``work`` is cancelled
        and :class:`DeadLetterAbandoned` raised (the send not acknowledged: the producer's
        close does not flush it, ``ProducerStop``)."""
        if self._abandoned.is_set():
            if asyncio.iscoroutine(work):
                work.close()
            raise self._given_up(message)
        doing = await unless_set(work, self._abandoned)
        if doing.cancelled():
            raise self._given_up(message)
        return doing.result()

    def _given_up(self, message: RawMessage) -> DeadLetterAbandoned:
        log.warning(
            "stopping: dead-letter send given up, not acknowledged; its message is not "
            "committed and is dead-lettered again at the next start",
            extra={"consumer": self._consumer, "topic": message.topic, "offset": message.offset},
        )
        return DeadLetterAbandoned()


FIRST_BACKOFF_S = 0.1  # a retry's first pause; doubled each time up to its ``max_backoff_s``

CONFLICT_RERUNS = 3
"""Reruns of work that lost a race in the event store (:class:`ConcurrencyError`, its
:class:`LocksDeadlocked`): the rerun reads again what the other writer committed and decides
against it (an id found stored is not appended again), so one rerun settles a real race. The
same conflict on every run is the work's own (an id it derives colliding with another's): past
these it fails like any other error (narrowed down, the event dead-lettered with the reason)
rather than holding the consumer for ever (#12)."""

CANCELLED_ALONE = 5
"""Attempts whose statement the database cancelled (57014: a ``statement_timeout``), in a row,
after which work run with ``cancelled_limit`` gives up with :class:`StatementCancelled`: the
batch falls back to its events one by one, and an event cancelled that often on its own while
others of its batch are applied is dead-lettered (replayable: ``branchline dlq replay``)."""

ATTEMPTS = Gauge(
    "branchline_consumer_attempts_in_a_row",
    "Failed attempts in a row of the work in hand (a batch or one event; 0 once it succeeds): "
    "a consumer held on the same offsets shows here and in its 'transient failure' warnings",
    ["consumer"],
)
CANCELLED = Counter(
    "branchline_consumer_statements_cancelled_total",
    "Attempts whose statement the database cancelled (57014, statement_timeout)",
    ["consumer"],
)


class StatementCancelled(Exception):
    """The database cancelled the work's statement ``attempts`` times in a row (57014);
    ``probed``: each time a probe statement on the same pool was answered right after."""

    def __init__(self, attempts: int, *, probed: bool = False) -> None:
        if probed:
            super().__init__(
                f"statement cancelled {attempts} times in a row with the event alone, "
                "the database answering a probe after each"
            )
        else:
            super().__init__(f"statement cancelled {attempts} times")
        self.attempts = attempts
        self.probed = probed


Answering = Callable[[], Awaitable[bool]]
"""A probe: whether the database answers a trivial statement now (on the pool the work uses,
bounded; :func:`branchline_shared.postgres.pool.is_reachable`)."""


def is_conflict(exc: BaseException) -> bool:
    """A race lost in the event store: nothing was written, a rerun decides (bounded)."""
    return isinstance(exc, ConcurrencyError)


async def retry_transient(
    work: Callable[[], Awaitable[Any]],
    *,
    consumer: str,
    max_backoff_s: float = 5.0,
    where: Callable[[], str | None] | None = None,
    cancelled_limit: int | None = None,
    answering: Answering | None = None,
) -> Any:
    """Run ``work`` until it succeeds or fails for a reason that is not transient. A conflict
    in the event store is rerun :data:`CONFLICT_RERUNS` times; with ``cancelled_limit``, a
    statement cancelled that many times in a row raises :class:`StatementCancelled` (without,
    a cancelled statement is retried for ever, in sight: :data:`ATTEMPTS`). With ``answering``
    too, a cancellation counts only if the probe is answered right after it; one it is not
    restarts the count (a database overloaded or away cancels everyone's statements: the
    work is retried, never given up, #12). ``where``: says
    which offsets the work is on, for the warning (never a value); asked only when one is
    logged, so the work's success path formats nothing."""
    backoff = FIRST_BACKOFF_S
    attempts = conflicts = cancelled = 0
    while True:
        try:
            result = await work()
        except Exception as exc:
            attempts += 1
            if is_conflict(exc):
                conflicts += 1
                if conflicts > CONFLICT_RERUNS:
                    ATTEMPTS.labels(consumer).set(0)
                    raise
            elif not is_transient(exc):
                ATTEMPTS.labels(consumer).set(0)
                raise
            if isinstance(exc, asyncpg.QueryCanceledError):
                CANCELLED.labels(consumer).inc()
                # probed only when it can decide; a database that does not answer a trivial
                # statement then says the cancellation is not the work's own: count again
                if cancelled_limit is None or answering is None or await answering():
                    cancelled += 1
                else:
                    cancelled = 0
                if cancelled_limit is not None and cancelled >= cancelled_limit:
                    ATTEMPTS.labels(consumer).set(0)
                    raise StatementCancelled(cancelled, probed=answering is not None) from exc
            else:
                cancelled = 0  # in a row: another fault between says nothing of the work
            RETRIES.labels(consumer).inc()
            ATTEMPTS.labels(consumer).set(attempts)
            log.warning(
                "transient failure; retrying",
                extra={
                    "consumer": consumer,
                    "error": describe_error(exc),
                    "backoff_s": backoff,
                    "attempts": attempts,
                    "where": where() if where is not None else None,
                },
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        else:
            if attempts:
                ATTEMPTS.labels(consumer).set(0)
            return result


Positions = dict[uuid.UUID, SourcePosition]
"""Where each delivered event sits in the store that wrote it (from the relay's headers)."""

BatchHandler = Callable[[list[RecordedEvent], Positions], Awaitable[object]]
RawBatchHandler = Callable[[list[RawMessage]], Awaitable[object]]
"""Handles a fetch's messages undecoded, and owns all of it: decoding, dead-lettering (poison
and each event that fails on its own), the position-jump check. What it raises that is not
transient ends the consumer."""


class Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """The partitions a rebalance took from this consumer since :meth:`clear`."""

    def __init__(self) -> None:
        self.revoked: set[TopicPartition] = set()

    def clear(self) -> None:
        self.revoked = set()

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked |= set(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


class BatchConsumer:
    """An aiokafka group consumer that hands each fetch to one handler call.

    Per fetch (every partition it returned, up to ``max_records``; up to ``max_records_behind``
    after a fetch of ``max_records`` or more, i.e. while behind): with ``handle``, decode
    (poison → dead letter), hand every event to ``handle`` at once (the audit ledger writes
    them in one transaction, #12); with ``handle_raw``, hand the messages undecoded (the
    followup worker skips its own first copies from their headers, ADR-0015). Either is
    retried on transient faults; then the offsets of the fetch's partitions are committed,
    only after the handler returned (its work durable), and only for partitions this consumer
    still holds: one a rebalance took meanwhile is redelivered to its new owner and its ids
    decide (ADR-0003). A ``handle`` failure that is not transient is narrowed down by halving
    the batch (each half handled, and so written, on its own) until the one event that causes
    it is alone: that one is dead-lettered with the reason, every other is handled. Handlers
    skip what they already applied (by event id), so a half handled twice is applied once.
    """

    def __init__(
        self,
        *,
        settings: CommonSettings,
        topics: Sequence[str],
        group_id: str,
        name: str,
        dead_letters: DeadLetters,
        handle: BatchHandler | None = None,
        handle_raw: RawBatchHandler | None = None,
        max_records: int = 500,
        max_records_behind: int | None = None,
        on_broker_lost: Callable[[], Awaitable[None]] | None = None,
        on_log_lost: Callable[[], Awaitable[None]] | None = None,
        jumps: PositionJumps | None = None,
        log_end_check_s: float = 5.0,
        after_round: Callable[[int], None] | None = None,
        answering: Answering | None = None,
        stop_patience_s: float = STOP_PATIENCE_S,
    ) -> None:
        if (handle is None) == (handle_raw is None):
            raise ValueError("a BatchConsumer needs exactly one of handle and handle_raw")
        self._settings = settings
        self._topics = list(topics)
        self._group_id = group_id
        self._name = name
        self._handle = handle
        self._handle_raw = handle_raw
        self._dead_letters = dead_letters
        self._max_records = max_records
        # A fetch of ``max_records`` or more leaves the consumer behind: the next fetch takes up
        # to ``max_records_behind``, until one brings fewer than ``max_records`` (#12, Round 27:
        # a followup worker behind works off its backlog in fewer, larger transactions).
        self._max_records_behind = max(max_records, max_records_behind or max_records)
        # Called when the broker seems to have lost our topics (tansu's memory store after a
        # restart): typically re-creates them, so commits can succeed again.
        self._on_broker_lost = on_broker_lost
        # Called after rewinding because the broker's log became shorter than our position:
        # what it lost before we read it is only in the event stores (reconcile repairs it).
        self._on_log_lost = on_log_lost
        # Sees a gap the moment an event skips versions of its stream (``handle`` only: a
        # ``handle_raw`` handler decodes, so it judges the positions itself).
        self._jumps = jumps
        self._log_end_check_s = log_end_check_s
        # Told the records of each round, an empty fetch's 0 included, once its offsets are
        # committed (the allocator trim, branchline_shared.allocator_trim).
        self._after_round = after_round
        # A probe on the handler's pool: an event alone whose statement is cancelled again
        # and again while it answers is dead-lettered (:meth:`_handle_cancelled`); without,
        # such an event is retried for ever (``handle`` only: a raw handler judges itself).
        self._answering = answering
        self._revocations = Revocations()
        self.started = asyncio.Event()
        self._stopping = False
        # set with ``_stopping``: a stop must not wait for a start that waits for the group
        self._stop_requested = asyncio.Event()
        self._stop_patience_s = stop_patience_s
        self._stop_asked_at: float | None = None
        # The bound of the batch in hand (none until a stop is asked for); None between batches.
        self._batch_in_hand: asyncio.Timeout | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def stop_patience_s(self) -> float:
        """How long a stop lets the batch in hand go on before cancelling it."""
        return self._stop_patience_s

    def request_stop(self) -> None:
        """Finish the batch in hand, commit its offsets, then return from :meth:`run`; a start
        still waiting for its first assignment is abandoned at once (nothing read yet). A
        batch still in hand after the stop's patience (``stop_patience_s``: its transaction
        waits on a lock, say) is cancelled, rolled back and not committed (redelivered)."""
        self._stopping = True
        self._stop_requested.set()
        if self._stop_asked_at is None:
            self._stop_asked_at = asyncio.get_running_loop().time()
            batch = self._batch_in_hand
            if batch is not None and batch.when() is None:
                batch.reschedule(self._stop_asked_at + self._stop_patience_s)
        # a dead-letter send the broker has not acknowledged would hold the stop to its bound
        if isinstance(self._dead_letters, DeadLetters):  # (tests' fakes: none to give up)
            self._dead_letters.abandon()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self._group_id,
            client_id=self._name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
            max_poll_interval_ms=300_000,
            metadata_max_age_ms=5_000,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )

    async def run(self) -> None:
        consumer = self._consumer()
        # told of each revocation, so a batch commits no partition a rebalance took meanwhile
        consumer.subscribe(self._topics, listener=self._revocations)
        try:
            # within the ``try``: a stop that cancels a start still closes what it opened
            if not await self._started(consumer):
                return
            self.started.set()
            checked = asyncio.get_running_loop().time()
            fetch_wait = FetchWait(self._settings.kafka_fetch_max_wait_ms, settle=SETTLE_ROUNDS)
            FETCH_WAIT.labels(self._name).set(fetch_wait.ms)
            bound = self._max_records
            while not self._stopping:
                # An idle round waits ROUND_MS for records; a stop no longer waits it out (up
                # to 0.5 s of every idle Ctrl-C, #12). Cut short, the round has handed out
                # nothing (aiokafka drains its buffer only on the way out, with no await), so
                # nothing is lost or committed; a round that did return is processed as ever.
                fetching = await unless_set(
                    consumer.getmany(timeout_ms=ROUND_MS, max_records=bound),
                    self._stop_requested,
                )
                if fetching.cancelled():
                    break
                batches = fetching.result()
                got = sum(len(records) for records in batches.values())
                bound = self._max_records_behind if got >= self._max_records else self._max_records
                if fetch_wait.starving or fetch_wait.raised or got < MEAGRE_ROUND:
                    await adapt_fetch_wait(consumer, fetch_wait, records=got, name=self._name)
                if batches:
                    self._revocations.clear()
                    if not await self._processed(
                        [r for records in batches.values() for r in records]
                    ):
                        return  # cut short by the stop: rolled back, redelivered
                    await self._commit(
                        consumer, {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
                if self._after_round is not None:
                    self._after_round(sum(len(records) for records in batches.values()))
                now = asyncio.get_running_loop().time()
                if now - checked > self._log_end_check_s:
                    checked = now
                    await self._rewind_if_log_was_lost(consumer, fetch_wait)
        except DeadLetterAbandoned:
            # the stop gave up a dead letter: the fetch is not committed (redelivered, #12)
            if not self._stopping:
                raise
        finally:
            # cut short by the stop bound's cancellation, still closes what it opened (#12)
            await stopped(consumer)

    async def _processed(self, records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        """:meth:`_process` ``records``; False if a stop cut it short: past the stop's patience
        (asked for before or during it) it is cancelled (its statement cancelled by asyncpg,
        its transaction rolled back) and nothing of it is to be committed (#12, Round 35)."""
        asked = self._stop_asked_at
        deadline = None if asked is None else asked + self._stop_patience_s
        batch: asyncio.Timeout | None = None
        try:
            async with asyncio.timeout(deadline) as batch:
                self._batch_in_hand = batch
                try:
                    await self._process(records)
                finally:
                    self._batch_in_hand = None
        except TimeoutError:
            if batch is None or not batch.expired():
                raise
            log.warning(
                "the stop cancelled the batch in hand after its patience; it is redelivered",
                extra={**_named(self), "patience_s": self._stop_patience_s},
            )
            return False
        return True

    async def _started(self, consumer: AIOKafkaConsumer) -> bool:
        """Start ``consumer`` unless a stop comes first: aiokafka's start waits for the first
        assignment, which a group stuck in a rebalance (a member that does not rejoin; tansu
        holds the join until it does) may never give: the stop would wait out its bound."""
        # a start cut short lets its bootstrap end first, so ``run``'s stop closes all it opened
        starting = await unless_set(
            retry_transient(lambda: start_settled(consumer), consumer=self._name),
            self._stop_requested,
        )
        if starting.cancelled():
            return False
        starting.result()  # a start that failed for good fails the run
        return True

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        # aiokafka retries a commit to an unknown topic forever; bound it, and let the broker
        # get its topics back before the next try.
        async def commit() -> None:
            held = still_held(offsets, consumer.assignment(), self._revocations.revoked)
            if not held:
                return
            try:
                async with asyncio.timeout(5):
                    await consumer.commit(held)
            except TimeoutError:
                if self._on_broker_lost is not None:
                    await self._on_broker_lost()
                raise
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance took partitions (or is under way): retrying would not end while
                # they are another member's, and committing them could move their new owner's
                # start past what it has not applied; the fetch is redelivered to whoever
                # holds them and its ids decide (ADR-0003).
                log.warning(
                    "offsets not committed: the group rebalanced under the batch",
                    extra={"consumer": self._name, "error": describe_error(exc)},
                )

        await retry_transient(commit, consumer=self._name)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raws = [
            RawMessage(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                list(record.headers or ()),
            )
            for record in records
        ]
        if self._handle_raw is not None:
            handle_raw = self._handle_raw
            await retry_transient(lambda: handle_raw(raws), consumer=self._name)
            CONSUMED.labels(self._name).inc(len(raws))
            return
        events: list[tuple[RawMessage, RecordedEvent]] = []
        positions: Positions = {}
        for raw, record in zip(raws, records, strict=True):
            try:
                event = decode_event(record.value)
            except PoisonEvent as exc:
                await self._dead_letters.send(raw, str(exc))
                continue
            events.append((raw, event))
            position = source_position(raw.headers)
            if position is not None:
                positions[event.event_id] = position
            if self._jumps is not None:
                self._jumps.seen(event, position)
        if events:
            went = _Pass()
            await self._handle_narrowing(events, positions, went)
            for raw, event, cancelled in went.cancelled:
                await self._handle_cancelled(raw, event, cancelled, positions, went.through)
            CONSUMED.labels(self._name).inc(len(events))

    async def _handle_narrowing(
        self,
        events: Sequence[tuple[RawMessage, RecordedEvent]],
        positions: Positions,
        went: _Pass,
    ) -> None:
        """Handle ``events`` at once; if that fails for good, each half on its own, down to
        the one event that fails, which goes to the dead-letter topic with the reason (a
        poison event costs about 2·log2(batch) extra transactions, and fails only itself).
        An event alone whose statement is cancelled every time is set aside in ``went``."""
        try:
            await self._handle_retrying(
                [e for _, e in events], positions, functools.partial(_where, events)
            )
        except Exception as exc:
            if len(events) == 1:
                if isinstance(exc, StatementCancelled):
                    went.cancelled.append((events[0][0], events[0][1], exc))
                    return
                await self._dead_letters.send(
                    events[0][0], f"handler failed: {describe_error(exc)}"
                )
                return
            half = len(events) // 2
            await self._handle_narrowing(events[:half], positions, went)
            await self._handle_narrowing(events[half:], positions, went)
        else:
            went.through = True

    async def _handle_cancelled(
        self,
        raw: RawMessage,
        event: RecordedEvent,
        exc: StatementCancelled,
        positions: Positions,
        others_went_through: bool,
    ) -> None:
        """An event whose statement was cancelled on every attempt alone: dead-lettered
        (replayable) if other events of its fetch went through meanwhile (the cancellations are
        its own), else retried (they may be everyone's: a database too slow for its
        ``statement_timeout``), in sight, until it goes through or, with the probe
        (``answering``), its statement is cancelled ``consumer_cancelled_alone_attempts`` times
        in a row, the probe answered after each: then it is dead-lettered too (the database
        does others' work; a probe unanswered restarts the count, #12, docs/reliability.md)."""
        if others_went_through:
            log.error(
                "event's statement cancelled on every attempt; dead-lettering it",
                extra={"consumer": self._name, "where": _where([(raw, event)])},
            )
            await self._dead_letters.send(raw, f"handler failed: {exc}")
            return
        probe = self._answering
        try:
            await self._handle_retrying(
                [event],
                positions,
                functools.partial(_where, [(raw, event)]),
                self._settings.consumer_cancelled_alone_attempts if probe is not None else None,
                probe,
            )
        except StatementCancelled as gave_up:
            log.error(
                "event's statement cancelled on every attempt alone while the database "
                "answered; dead-lettering it",
                extra={
                    "consumer": self._name,
                    "where": _where([(raw, event)]),
                    "attempts": gave_up.attempts,
                },
            )
            await self._dead_letters.send(raw, f"handler failed: {gave_up}")
        except Exception as error:
            await self._dead_letters.send(raw, f"handler failed: {describe_error(error)}")

    async def _handle_retrying(
        self,
        events: list[RecordedEvent],
        positions: Positions,
        where: Callable[[], str | None] | None = None,
        cancelled_limit: int | None = CANCELLED_ALONE,
        answering: Answering | None = None,
    ) -> None:
        handler = self._handle
        assert handler is not None  # only a decoding consumer narrows

        async def handle() -> object:
            return await handler(events, positions)

        await retry_transient(
            handle,
            consumer=self._name,
            where=where,
            cancelled_limit=cancelled_limit,
            answering=answering,
        )

    async def _rewind_if_log_was_lost(
        self, consumer: AIOKafkaConsumer, fetch_wait: FetchWait | None = None
    ) -> None:
        """After a broker lost its log (tansu's memory store restarted), our position can be
        past the new end; the broker does not say OFFSET_OUT_OF_RANGE, so we check."""
        marks = await partition_marks(consumer)
        lost = partitions_past_log_end(
            {tp: position for tp, (position, _) in marks.items()},
            {tp: highwater for tp, (_, highwater) in marks.items()},
        )
        if not lost:
            return
        LOG_LOST.labels(self._name).inc()
        log.warning(
            "broker log shorter than our position; rewinding and reconciling",
            extra={"consumer": self._name, "partitions": [str(tp) for tp in lost]},
        )
        await consumer.seek_to_beginning(*lost)
        if fetch_wait is not None and fetch_wait.raised:  # the log is short again
            fetch_wait.reset()
            if set_fetch_wait(consumer, fetch_wait.ms):
                FETCH_WAIT.labels(self._name).set(fetch_wait.ms)
        if self._on_log_lost is not None:
            await self._on_log_lost()


@dataclass
class _Pass:
    """What one fetch's narrowing saw: whether any part of it went through, and the events
    whose statement was cancelled on every attempt alone."""

    through: bool = False
    cancelled: list[tuple[RawMessage, RecordedEvent, StatementCancelled]] = field(
        default_factory=list
    )


def _where(events: Sequence[tuple[RawMessage, RecordedEvent]]) -> str:
    """The offsets of ``events`` per partition, first to last (never a value)."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for raw, _ in events:
        key = (raw.topic, raw.partition)
        first, last = spans.get(key, (raw.offset, raw.offset))
        spans[key] = (min(first, raw.offset), max(last, raw.offset))
    return " ".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(spans.items()))


def still_held(
    offsets: Mapping[TP, int], assignment: Iterable[TP], revoked: Iterable[TP]
) -> dict[TP, int]:
    """The offsets of ``offsets`` whose partitions are assigned and were not revoked since the
    fetch (a partition revoked and assigned back may have been read by another member since:
    committing our older position there would only cause redelivery, yet it is not ours)."""
    held = set(assignment) - set(revoked)
    return {tp: offset for tp, offset in offsets.items() if tp in held}


async def stop_batch_consumer(
    consumer: BatchConsumer, task: asyncio.Task[None], timeout_s: float
) -> None:
    """Ask ``consumer`` (running as ``task``) to finish the batch in hand and commit it; past
    ``timeout_s`` the task is cancelled: what it had not committed is redelivered and its ids
    decide (ADR-0003). A crashed task's error is logged, never raised here (a stop must go on
    to release what the consumer used)."""
    consumer.request_stop()
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    if not done:
        log.error("the consumer did not stop in time; cancelling it", extra=_named(consumer))
        # cancelled again until it ends (one cancel can be lost), bounded
        with contextlib.suppress(Exception):
            await cancel_and_wait(task, within_s=timeout_s)
        if not task.done():
            log.critical("the consumer survives its cancellation", extra=_named(consumer))
            return
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the consumer had failed",
            extra={**_named(consumer), "error": repr(task.exception())},
        )


def _named(consumer: BatchConsumer) -> dict[str, str]:
    return {"consumer": consumer.name}


def partitions_past_log_end(
    positions: Mapping[TP, int], highwaters: Mapping[TP, int | None]
) -> list[TP]:
    """Partitions whose position lies beyond the log end a fetch last reported (the high
    watermark: exact, unlike some brokers' ListOffsets(latest), which tansu answers with the
    base offset of the last batch)."""
    lost: list[TP] = []
    for tp, position in positions.items():
        highwater = highwaters.get(tp)
        if highwater is not None and position > highwater:
            lost.append(tp)
    return lost
