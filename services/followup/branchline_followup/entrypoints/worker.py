"""The followup worker's consumer: every event into the read models (ADR-0015).

An aiokafka group consumer (:class:`~branchline_shared.kafka.consuming.BatchConsumer`, the
audit consumer's) reads the event topics in the consumer group Faust's app used before
(``settings.topic(CONSUMER)``: an upgraded worker goes on from its committed offsets, and the
self-check judges the worker by them). The topics are keyed by client id, so one client's
events arrive in order; state that must survive lives in PostgreSQL (the projector records
applied ids there).

Each fetch (up to the ``followup_worker_batch_size`` setting: a bounded transaction and lock
set; while behind, i.e. after a fetch that size or more, up to
``followup_worker_batch_size_behind``) is applied in one transaction
(:func:`~branchline_followup.application.batches.apply_batch`), and its offsets are committed
only after that commit. Busy, a batch amortises the commit; idle, an event is applied at once,
waiting for nothing.

The worker also reads followup's own topic, where its relay publishes what followup's store
recorded (task creations, staff actions, timers, reads). The first publication of each is
skipped unread, before decoding and without a database round trip
(:func:`is_first_own_copy`, #12): every event followup's store records is recorded as applied
in the transaction that appends it (ADR-0003, ADR-0013), so applying that copy would only find
it applied. A copy a repair re-queued (the relay's ``requeued`` header) is decoded and applied
like any event, its id deciding (ADR-0003): it was re-queued because the read models miss it
(e.g. swapped in by a rebuild from a broker that had lost it). The topic is still read to its
end, so the group's offsets there move on (the self-check judges the worker's progress by
them). A copy an older relay published without the header is taken for a first publication:
docs/reliability.md, "The worker's own events".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from branchline_followup.adapters.pg_schemas import SWAP_LOCK_PROBE
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.ports import UnitsOfWork
from branchline_followup.application.projector import Projection
from branchline_followup.application.recording import SOURCE
from branchline_shared.events.plain_messages import plain_event, plain_payload
from branchline_shared.events.typed import Decoded
from branchline_shared.kafka.consuming import (
    CANCELLED_ALONE,
    Answering,
    BatchConsumer,
    DeadLetters,
    RawMessage,
)
from branchline_shared.kafka.topics import Topics
from branchline_shared.kafka.wire import (
    PoisonEvent,
    decode_current_event,
    is_first_publication_from,
    source_position,
)
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.pool import PgPool, PromptProbe
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.settings import FollowupSettings

log = logging.getLogger(__name__)
CONSUMER = "followup-worker"
_OWN_SOURCE = SOURCE.encode()
# How often the worker compares its positions with the log end (a broker that lost its log).
LOG_END_CHECK_S = 2.0


def is_first_own_copy(raw: RawMessage) -> bool:
    """Whether ``raw`` is the relay's first publication of an event followup's own store
    recorded (its headers: source ``followup``, not re-queued): applied where it was recorded,
    nothing to do (#12: each used to be decoded, and a batch of them looked up)."""
    return is_first_publication_from(raw.headers, _OWN_SOURCE)


def worker_group(settings: FollowupSettings) -> str:
    """The worker's consumer group: the id of the Faust app it was until ADR-0015 (Faust's
    group is its app's id), so the committed offsets and the self-check carry over."""
    return settings.topic(CONSUMER)


def create_worker_consumer(
    settings: FollowupSettings,
    topics: Topics,
    pool: PgPool,
    dead_letters: DeadLetters,
    projection: Projection | None = None,
    units: UnitsOfWork | None = None,
    jumps: PositionJumps | None = None,
    *,
    on_broker_lost: Callable[[], Awaitable[None]] | None = None,
    on_log_lost: Callable[[], Awaitable[None]] | None = None,
    after_round: Callable[[int], None] | None = None,
) -> BatchConsumer:
    """``units``: where the projection writes (default: units on ``pool`` that wake no
    relay; the running worker passes its runtime's, which wake its relay). ``on_log_lost``:
    called after the worker rewound because the broker lost its log (what the broker lost
    before the worker read it is only in the event stores: the self-repair reconciles)."""
    projected = projection if projection is not None else Projection(policy_from_settings(settings))
    writes: UnitsOfWork = units if units is not None else PostgresUnitsOfWork(pool)

    # the probe of an event alone whose statement is cancelled again and again (#12)
    answering = worker_probe(pool) if pool is not None else None
    alone = settings.consumer_cancelled_alone_attempts

    async def handle(raws: list[RawMessage]) -> None:
        # looked up when called: benchmarks and tests replace it
        await handle_batch(
            raws, writes, dead_letters, projected, jumps, answering=answering, alone_attempts=alone
        )

    return BatchConsumer(
        settings=settings,
        topics=topics.event_topics(),
        group_id=worker_group(settings),
        name=CONSUMER,
        handle_raw=handle,
        dead_letters=dead_letters,
        max_records=settings.followup_worker_batch_size,
        max_records_behind=settings.followup_worker_batch_size_behind,
        on_broker_lost=on_broker_lost,
        on_log_lost=on_log_lost,
        log_end_check_s=LOG_END_CHECK_S,
        after_round=after_round,
        stop_patience_s=settings.consumer_stop_patience_s,
    )


def worker_probe(pool: PgPool) -> Answering:
    """The worker's probe: the swap lock, as every unit takes it first, answered within a
    tenth of the pool's ``statement_timeout`` (#12, docs/reliability.md)."""
    return PromptProbe(pool, *SWAP_LOCK_PROBE)


async def handle_batch(
    raws: list[RawMessage],
    units: UnitsOfWork,
    dead_letters: DeadLetters,
    projection: Projection,
    jumps: PositionJumps | None = None,
    *,
    answering: Answering | None = None,
    alone_attempts: int = CANCELLED_ALONE,
) -> None:
    """Skip followup's own first copies (:func:`is_first_own_copy`), decode the rest (poison
    → dead letter), apply them as one batch, dead-letter each event that fails on its own with
    the reason (``answering``, ``alone_attempts``: :func:`~branchline_followup.application.
    batches.apply_batch`)."""
    batch: list[tuple[RawMessage, Delivered]] = []
    for raw in raws:
        if is_first_own_copy(raw):
            continue
        # a plain message (the usual one), envelope and payload, without the checks that
        # cannot refuse it, as the rebuild reads it (#12): the same event; any other, or one
        # the checked validators refuse, with every check (the batch decodes its payload)
        decoded: Decoded | None = None
        event = plain_event(raw.value)
        if event is not None:
            decoded = plain_payload(event)
        try:
            if event is None:
                event = decode_current_event(raw.value)
        except PoisonEvent as exc:
            await dead_letters.send(raw, str(exc))
            continue
        try:
            position = source_position(raw.headers)
        except Exception as exc:
            await dead_letters.send(raw, f"projection failed: {describe_error(exc)}")
            continue
        if jumps is not None and event.source != SOURCE:
            # followup's own streams are not judged: their first copies are skipped unseen,
            # so a re-queued one would look like a jump; and a copy the broker lost misses
            # the read models nothing (recorded as applied where recorded).
            jumps.seen(event, position)
        place = (raw.topic, raw.partition, raw.offset)
        batch.append((raw, Delivered(event, position, place, decoded)))
    outcome = await apply_batch(
        units,
        [d for _, d in batch],
        projection,
        consumer=CONSUMER,
        answering=answering,
        alone_attempts=alone_attempts,
    )
    for index, error in outcome.failed:
        await dead_letters.send(batch[index][0], f"projection failed: {describe_error(error)}")


async def handle_message(
    raw: RawMessage, units: UnitsOfWork, dead_letters: DeadLetters, projection: Projection
) -> None:
    """One message as a batch of one."""
    await handle_batch([raw], units, dead_letters, projection)
