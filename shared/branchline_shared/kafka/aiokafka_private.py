"""What this project reads of aiokafka's private attributes, read here and nowhere else (#12).

aiokafka (0.14) has no public way to know when a client's bootstrap has ended (from then on
every connection is the client's own, ``kafka.starting``), what request timeout bounds it, or
to close what a consumer's ``stop()`` did not reach when it was cancelled, or when it ended
short by itself (it marks itself closed first, so a second ``stop()`` does nothing). Only a
producer's ``AIOKafkaClient`` is public (``producer.client``); a consumer's and an admin
client's are ``_client``. So:

- :func:`private_parts` is the one function that reads them, for a version of aiokafka whose
  source was read (:data:`CHECKED_VERSIONS`); another version is still tried, attribute by
  attribute, and what is missing is logged once and done without (a start cut short then does
  not wait for its bootstrap, a cut stop does not close the rest: the behaviour before #12);
- ``tests/unit/test_aiokafka_private.py`` fails when the installed aiokafka is not a checked
  version or lacks any of them, so an upgrade is read again before it ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiokafka
from aiokafka.errors import ProducerClosed

log = logging.getLogger(__name__)

CHECKED_VERSIONS = frozenset({"0.14.0"})
"""aiokafka versions whose source these attributes were read from (pyproject pins one)."""

_CLIENT = ("_request_timeout_ms", "_sync_task")
"""An ``AIOKafkaClient``'s: its request timeout, and its metadata task, made as the
bootstrap's last step (``AIOKafkaClient.bootstrap``)."""
_CONSUMER = ("_coordinator", "_fetcher", "_client")
_PRODUCER = ("_sender", "_message_accumulator")
"""A producer's ``Sender`` (made with the producer), whose ``sender_task`` sends its batches,
and its ``MessageAccumulator`` (the batches not yet delivered: ``_batches`` waiting,
``_pending_batches`` in flight; ``fail_all``)."""
_COORDINATOR_TASKS = (
    "_coordination_task",
    "_heartbeat_task",
    "_commit_refresh_task",
    "_reset_committed_task",  # a consumer without a group (``NoGroupCoordinator``)
)

_FETCHER_TASKS = ("_fetch_task", "_pending_tasks")
"""A consumer's ``Fetcher``'s (made by its start): its routine, and the fetch and
position-reset tasks the routine started (``Fetcher._fetch_requests_routine``)."""

_warned: set[str] = set()


@dataclass(frozen=True)
class PrivateParts:
    """An aiokafka client's private parts, as this project uses them."""

    request_timeout_s: float | None
    """Its ``AIOKafkaClient``'s request timeout (bounds each step of a bootstrap)."""
    bootstrapped: Callable[[], bool] | None
    """Whether its bootstrap has ended (its metadata task exists)."""
    close_rest: Callable[[], Awaitable[None]] | None = field(default=None)
    """What a consumer's or producer's ``stop()``, cancelled or ended short by one of its own
    tasks, did not close (a consumer's group coordinator's and fetcher's tasks, a producer's
    sender task and send tasks in flight, its batches not delivered failed; the client's
    metadata task and connections). None for an admin client (its
    close is its client's)."""


def private_parts(client: object) -> PrivateParts | None:
    """The parts of ``client`` (an aiokafka producer, consumer or admin client) this project
    needs; None for an object that is none of them (a unit test's stand-in). A part an
    unchecked aiokafka lacks is None (and logged once)."""
    inner = _inner_client(client)
    if inner is None:
        return None
    timeout_ms = _private(inner, "_request_timeout_ms")
    has_sync_task = _has(inner, "_sync_task")
    return PrivateParts(
        request_timeout_s=timeout_ms / 1000 if isinstance(timeout_ms, int | float) else None,
        bootstrapped=(lambda: inner._sync_task is not None) if has_sync_task else None,
        close_rest=_consumer_rest(client, inner)
        if isinstance(client, aiokafka.AIOKafkaConsumer)
        else _producer_rest(client, inner)
        if isinstance(client, aiokafka.AIOKafkaProducer)
        else None,
    )


def missing_private_parts(client: object) -> list[str]:
    """The private attributes ``client`` (a started aiokafka client) lacks, by name."""
    inner = _inner_client(client)
    if inner is None:
        return ["an AIOKafkaClient (`client` or `_client`)"]
    missing = [name for name in _CLIENT if not hasattr(inner, name)]
    if isinstance(client, aiokafka.AIOKafkaProducer):
        missing += [name for name in _PRODUCER if not hasattr(client, name)]
    if isinstance(client, aiokafka.AIOKafkaConsumer):
        missing += [name for name in _CONSUMER if not hasattr(client, name)]
        coordinator = getattr(client, "_coordinator", None)
        if coordinator is not None and not any(
            hasattr(coordinator, name) for name in _COORDINATOR_TASKS
        ):
            missing.append("the coordinator's tasks")
        fetcher = getattr(client, "_fetcher", None)
        if fetcher is not None:
            missing += [f"Fetcher.{name}" for name in _FETCHER_TASKS if not hasattr(fetcher, name)]
    return missing


def _inner_client(client: object) -> Any:
    # a producer's is public (``client``); a consumer's and an admin client's are not
    inner = getattr(client, "client", None)
    if isinstance(inner, aiokafka.AIOKafkaClient):
        return inner
    inner = getattr(client, "_client", None)
    return inner if isinstance(inner, aiokafka.AIOKafkaClient) else None


def _has(owner: object, name: str) -> bool:
    if hasattr(owner, name):
        return True
    key = f"{type(owner).__name__}.{name}"
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "aiokafka has no %s (version %s, checked: %s); done without",
            key,
            aiokafka.__version__,
            ", ".join(sorted(CHECKED_VERSIONS)),
        )
    return False


def _private(owner: object, name: str) -> Any:
    return getattr(owner, name) if _has(owner, name) else None


def _consumer_rest(
    consumer: aiokafka.AIOKafkaConsumer, inner: Any
) -> Callable[[], Awaitable[None]] | None:
    if not all(_has(consumer, name) for name in _CONSUMER):
        return None

    async def close_rest() -> None:
        # aiokafka 0.14's ``AIOKafkaConsumer.stop`` is: the coordinator's ``close`` (ends its
        # coordination, stops its heartbeat and commit-refresh tasks, leaves the group), the
        # fetcher's ``close``, the client's ``close``. Cut anywhere, the rest is done here,
        # less the group's leave (the broker drops the member at its session timeout).
        coordinator = consumer._coordinator
        if coordinator is not None:
            tasks = [getattr(coordinator, name, None) for name in _COORDINATOR_TASKS]
            await _all_ended([t for t in tasks if isinstance(t, asyncio.Task) and not t.done()])
        fetcher = consumer._fetcher
        if fetcher is not None:
            # ``Fetcher.close`` cancels its tasks one by one and awaits each: a fetch or
            # position-reset task cancelled in its retry back-off (a broker gone, restarting)
            # ends cancelled, that await raises, and the tasks after it are never cancelled
            # (one may be connecting: a socket opened after the client's close). All of them
            # are ended here first, then its close runs to its end.
            await _all_ended(_fetcher_tasks(fetcher))
            with contextlib.suppress(asyncio.CancelledError):  # its own tasks', cancelled
                await fetcher.close()
        await inner.close()

    return close_rest


def _producer_rest(
    producer: aiokafka.AIOKafkaProducer, inner: Any
) -> Callable[[], Awaitable[None]] | None:
    if not all(_has(producer, name) for name in _PRODUCER):
        return None

    async def close_rest() -> None:
        # aiokafka 0.14's ``AIOKafkaProducer.stop`` is: the accumulator's close (a flush, in a
        # task of its own) or the sender task's end, the sender's close (cancels its task,
        # which then awaits its send tasks in flight one by one), the client's ``close``. Cut
        # or ended short anywhere, every task of the sender's (its routine, its sends in
        # flight) and of the accumulator's (the stop's flush) is ended here together, every
        # batch not delivered failed (its callers told, not left waiting), the client closed.
        sender = producer._sender
        accumulator = producer._message_accumulator
        routine = getattr(sender, "sender_task", None)
        tasks = [routine] if isinstance(routine, asyncio.Task) and not routine.done() else []
        tasks += [task for task in _tasks_of(sender, accumulator) if task not in tasks]
        await _all_ended(tasks)
        _undelivered_failed(accumulator)
        await inner.close()

    return close_rest


def _tasks_of(*owners: object) -> list[asyncio.Task[Any]]:
    """The running tasks whose coroutine is a method of one of ``owners`` (aiokafka keeps a
    producer's send tasks in a local of its sender's routine, nowhere else)."""
    found = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if not task.done() and frame is not None:
            owner = frame.f_locals.get("self")
            if any(owner is candidate for candidate in owners):
                found.append(task)
    return found


def _undelivered_failed(accumulator: Any) -> None:
    """Every batch ``accumulator`` holds (waiting or in flight) failed with ``ProducerClosed``
    (its ``send`` futures too); the batches' own futures and drain waiters, which nobody awaits
    now (the flush that awaited a drain was ended), retrieved: asyncio would log each as an
    exception never retrieved when it is collected."""
    waiting = _private(accumulator, "_batches")
    in_flight = _private(accumulator, "_pending_batches")
    batches = [batch for queue in (waiting or {}).values() for batch in queue]
    batches += list(in_flight or ())
    if _has(accumulator, "fail_all"):
        accumulator.fail_all(ProducerClosed())
    for batch in batches:
        for name in ("future", "_drain_waiter"):
            future = getattr(batch, name, None)
            if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
                future.exception()


def _fetcher_tasks(fetcher: object) -> list[asyncio.Task[Any]]:
    tasks: list[asyncio.Task[Any]] = []
    routine = _private(fetcher, "_fetch_task")
    if isinstance(routine, asyncio.Task):
        tasks.append(routine)
    pending = _private(fetcher, "_pending_tasks")
    if isinstance(pending, set):
        tasks += [task for task in pending if isinstance(task, asyncio.Task)]
    return tasks


async def _all_ended(tasks: list[asyncio.Task[Any]]) -> None:
    """Every task of ``tasks`` cancelled (unless done) and ended; what they raised retrieved
    (they were ended on purpose)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()
