"""The followup worker: a Faust app whose agent projects every event into the read models.

Faust brings the consumer group, partition assignment and ordered per-partition streams (the
topics are keyed by client id, so one client's events arrive in order); state that must
survive lives in PostgreSQL (the projector records applied ids there), so Faust's own store
stays ``memory://``.

The agent applies what the consumer has fetched in batches (#12): events already waiting
behind the one in hand join its batch (up to the ``followup_worker_batch_size`` setting), and
while its partition holds more records than it was handed, the agent yields a few turns of
the loop for the next to arrive (:func:`more_arrives`); the batch is applied in one
transaction
(:func:`~branchline_followup.application.batches.apply_batch`); its events are acknowledged
(their offsets committed) only after that commit. Busy, a batch amortises the
commit; idle, an event is applied at once, waiting for nothing.

The agent also reads followup's own topic, where its relay publishes what followup's store
recorded (task creations, staff actions, timers, reads). The first publication of each is
acknowledged unread, before decoding and without a database round trip
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

import asyncio
import contextlib
import logging
import os
import threading
from typing import Any

import faust
import mode

from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.ports import UnitsOfWork
from branchline_followup.application.projector import Projection
from branchline_followup.application.recording import SOURCE
from branchline_shared.kafka.consuming import DeadLetters, RawMessage
from branchline_shared.kafka.fetch_latency import install_faust_fetch_wait
from branchline_shared.kafka.topics import Topics
from branchline_shared.kafka.wire import (
    PoisonEvent,
    decode_current_event,
    is_first_publication_from,
    source_position,
)
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.pool import PgPool
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.settings import FollowupSettings

log = logging.getLogger(__name__)
CONSUMER = "followup-worker"
_OWN_SOURCE = SOURCE.encode()
# Turns of the loop the agent yields, when its partition holds more records, for the next of
# them to reach its queue before it applies what it gathered (#12, :func:`more_arrives`).
GATHER_POLLS = 8


def is_first_own_copy(raw: RawMessage) -> bool:
    """Whether ``raw`` is the relay's first publication of an event followup's own store
    recorded (its headers: source ``followup``, not re-queued): applied where it was recorded,
    nothing to do (#12: each used to be decoded, and a batch of them looked up)."""
    return is_first_publication_from(raw.headers, _OWN_SOURCE)


def create_faust_app(
    settings: FollowupSettings,
    topics: Topics,
    pool: PgPool,
    dead_letters: DeadLetters,
    projection: Projection | None = None,
    units: UnitsOfWork | None = None,
    jumps: PositionJumps | None = None,
) -> faust.App:
    """``units``: where the projection writes (default: units on ``pool`` that wake no
    relay; the running worker passes its runtime's, which wake its relay)."""
    if projection is None:
        projection = Projection(policy_from_settings(settings))
    writes: UnitsOfWork = units if units is not None else PostgresUnitsOfWork(pool)
    install_faust_fetch_wait(settings.kafka_fetch_max_wait_ms)
    app = faust.App(
        settings.topic(CONSUMER),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=False,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        # A rebalance or a stop must never wait for the agent to ack what it holds: Faust
        # clears the stream buffers first, so the agent can be left holding a part-gathered
        # batch while Faust waits for its acks; that wait has no bound and froze a worker
        # for good mid-rebalance and at stop. Not waiting is safe here: offsets are committed
        # only for acked events, acked only after their transaction committed, and a
        # redelivered event is recognised by its recorded id (effectively once, ADR-0003).
        stream_wait_empty=False,
    )
    projected = projection
    batch_max = settings.followup_worker_batch_size  # a bounded transaction and lock set
    source = app.topic(
        *topics.event_topics(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name="project-events")
    async def project(stream: Any) -> None:
        manual = stream.noack()  # acked only once the batch's transaction committed
        queue = getattr(manual.channel, "queue", None)
        pending: list[Any] = []
        async for event in manual.events():
            pending.append(event)
            if len(pending) < batch_max and queue is not None:
                behind = records_behind(app, event.message) > 0
                if await more_arrives(queue, GATHER_POLLS if behind else 0):
                    continue  # more is fetched already (or on its way): it joins this batch
            raws = [
                RawMessage(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                    list(e.message.headers or ()),
                )
                for e in pending
            ]
            await handle_batch(raws, writes, dead_letters, projected, jumps)
            for done in pending:
                await manual.ack(done)
            pending = []

    return app


def records_behind(app: faust.App, message: Any) -> int:
    """How many records the broker holds past ``message`` in its partition (by the high
    watermark the last fetch reported; 0 when unknown)."""
    try:
        highwater = app.consumer.highwater(message.tp)
    except Exception:  # no consumer or partition yet (a rebalance): judge as not behind
        return 0
    if highwater is None:
        return 0
    offset: int = message.offset
    return max(0, int(highwater) - offset - 1)


async def more_arrives(queue: asyncio.Queue[Any], polls: int) -> bool:
    """Whether another event waits in the agent's ``queue``, after yielding to the loop up to
    ``polls`` times for it (#12). Faust hands the agent one message per turn of the fetcher
    (a task pair and an ``asyncio.wait`` per message), so a worker that is behind found its
    queue empty after nearly every message and applied batches of 1-3 events, each costing
    a whole transaction, while the backlog grew in the fetcher's buffer. A few turns of the
    loop let the fetcher hand over what it already holds; ``polls`` is 0 when the partition
    has nothing more, so an idle worker still applies an event at once."""
    for _ in range(polls):
        if not queue.empty():
            return True
        await asyncio.sleep(0)
    return not queue.empty()


async def handle_batch(
    raws: list[RawMessage],
    units: UnitsOfWork,
    dead_letters: DeadLetters,
    projection: Projection,
    jumps: PositionJumps | None = None,
) -> None:
    """Skip followup's own first copies (:func:`is_first_own_copy`), decode the rest (poison
    → dead letter), apply them as one batch, dead-letter each event that fails on its own with
    the reason."""
    batch: list[tuple[RawMessage, Delivered]] = []
    for raw in raws:
        if is_first_own_copy(raw):
            continue
        try:
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
        batch.append((raw, Delivered(event, position)))
    outcome = await apply_batch(units, [d for _, d in batch], projection, consumer=CONSUMER)
    for index, error in outcome.failed:
        await dead_letters.send(batch[index][0], f"projection failed: {describe_error(error)}")


async def handle_message(
    raw: RawMessage, units: UnitsOfWork, dead_letters: DeadLetters, projection: Projection
) -> None:
    """One message as a batch of one."""
    await handle_batch([raw], units, dead_letters, projection)


async def stop_worker_app(app: faust.App, timeout_s: float) -> None:
    """Stop ``app``, bounded by ``timeout_s``; past it, end its consumer thread's loop (what
    was not committed is redelivered and recognised by its recorded id, ADR-0003). The thread is
    not a daemon: a stop that never returned would keep a SIGTERMed worker process alive for
    good, and in-process (tests, tools) the thread would go on polling the broker."""
    # Two ways a stop hangs: awaiting (Faust waits for acks, commits) or blocked (mode joins
    # the consumer thread with a plain, unbounded Event.wait on this loop's thread), where no
    # coroutine timeout can fire; a watchdog thread covers the second.
    ended = threading.Event()

    def end_hung_consumer() -> None:
        if ended.is_set():
            return
        ended.set()
        log.error("the followup worker's Faust app did not stop in time; ending its consumer")
        if not end_consumer_thread(app):
            log.critical("the followup worker's consumer thread still runs after its stop")

    watchdog = threading.Timer(timeout_s + 5.0, end_hung_consumer)
    watchdog.daemon = True
    watchdog.start()
    try:
        await asyncio.wait_for(app.stop(), timeout_s)
    except TimeoutError:
        end_hung_consumer()
    finally:
        watchdog.cancel()
    if ended.is_set():
        await cancel_faust_tasks()


async def cancel_faust_tasks(rounds: int = 5, wait_s: float = 2.0) -> None:
    """Cancel the tasks Faust's services left on this loop after a stop that did not finish.
    Some of them swallow a first cancellation (mode's task runner), which would hang the
    cancellation of every task at a process's exit; so they are cancelled until they end."""
    packages = tuple(os.path.dirname(module.__file__ or "") + os.sep for module in (faust, mode))
    for _ in range(rounds):
        left = [
            task
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task()
            and getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "").startswith(
                packages
            )
        ]
        if not left:
            return
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=wait_s)
    log.critical("tasks of the followup worker's Faust app survive their cancellation")


def end_consumer_thread(app: faust.App, join_s: float = 5.0) -> bool:
    """Stop the event loop of ``app``'s consumer thread and wait for the thread to end; True if
    no such thread is left running. Reaches into Faust's delegate consumer (``_thread``, the
    mode ``ServiceThread`` that owns ``thread_loop``), which has no public handle for it."""
    service = getattr(getattr(app, "_consumer", None), "_thread", None)
    loop = getattr(service, "thread_loop", None)
    thread = getattr(service, "_thread", None)
    if isinstance(loop, asyncio.AbstractEventLoop):
        with contextlib.suppress(RuntimeError):  # already closed: the thread has ended
            loop.call_soon_threadsafe(loop.stop)
    if isinstance(thread, threading.Thread):
        thread.join(join_s)
        return not thread.is_alive()
    return True
