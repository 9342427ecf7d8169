"""The followup worker's consumer (ADR-0015): the consumer group the Faust app had (an
upgraded worker goes on from its committed offsets; the self-check asks about that group),
every event topic, batches bounded by ``followup_worker_batch_size`` (while behind by
``followup_worker_batch_size_behind``), each fetch handed
undecoded to the worker's own batch path."""

from __future__ import annotations

from typing import Any

import pytest

from branchline_followup.adapters.pg_schemas import SWAP_LOCK_KEY
from branchline_followup.entrypoints import worker
from branchline_shared.kafka.consuming import RawMessage
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.settings import FollowupSettings

pytestmark = pytest.mark.unit


def settings() -> FollowupSettings:
    return FollowupSettings(
        topic_namespace="bank-a",
        followup_worker_batch_size=37,
        followup_worker_batch_size_behind=111,
    )


def test_the_worker_reads_every_event_topic_in_the_faust_apps_group() -> None:
    s = settings()
    topics = declare_topics(s)
    consumer = worker.create_worker_consumer(s, topics, None, None)  # type: ignore[arg-type]

    # faust.App(settings.topic(CONSUMER)): Faust's consumer group is its app's id
    assert consumer._group_id == "bank-a.followup-worker"
    assert worker.worker_group(s) == "bank-a.followup-worker"
    assert consumer._topics == topics.event_topics()
    assert consumer._max_records == 37
    assert consumer._max_records_behind == 111  # while behind (#12, Round 27)
    assert consumer.name == worker.CONSUMER


async def test_each_fetch_goes_to_the_workers_batch_path_undecoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings()
    units, dead, projection, jumps = object(), object(), object(), object()
    consumer = worker.create_worker_consumer(
        s,
        declare_topics(s),
        None,  # type: ignore[arg-type]
        dead,  # type: ignore[arg-type]
        projection,  # type: ignore[arg-type]
        units,  # type: ignore[arg-type]
        jumps,  # type: ignore[arg-type]
    )
    calls: list[tuple[Any, ...]] = []

    async def handle_batch(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        assert kwargs == {"answering": None, "alone_attempts": 5}  # no pool: no probe

    monkeypatch.setattr(worker, "handle_batch", handle_batch)
    raws = [RawMessage("t", 0, 1, b"k", b"v", [])]
    assert consumer._handle_raw is not None
    await consumer._handle_raw(raws)

    assert calls == [(raws, units, dead, projection, jumps)]


async def test_the_worker_probes_its_own_pool_for_an_event_cancelled_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event alone whose statement is cancelled again and again is given up only while
    the worker's pool answers a probe promptly (#12, docs/reliability.md): the probe takes
    the swap lock, as every unit does first; the attempts: the setting."""
    probed: list[tuple[object, ...]] = []

    class Probe:
        def __init__(self, *args: object) -> None:
            probed.append(args)

        async def __call__(self) -> bool:
            return True

    monkeypatch.setattr(worker, "PromptProbe", Probe)
    s = settings().model_copy(update={"consumer_cancelled_alone_attempts": 7})
    pool = object()
    consumer = worker.create_worker_consumer(
        s,
        declare_topics(s),
        pool,  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
    )
    given: list[dict[str, Any]] = []

    async def handle_batch(*args: Any, **kwargs: Any) -> None:
        given.append(kwargs)

    monkeypatch.setattr(worker, "handle_batch", handle_batch)
    assert consumer._handle_raw is not None
    await consumer._handle_raw([RawMessage("t", 0, 1, b"k", b"v", [])])

    assert [kwargs["alone_attempts"] for kwargs in given] == [7]
    assert await given[0]["answering"]() is True
    # The probe takes what every unit takes: the swap lock shared and the write lock of the
    # one table every unit writes (#12, Round 32).
    [(probed_pool, statement, key)] = probed
    assert (probed_pool, key) == (pool, SWAP_LOCK_KEY)
    assert "pg_advisory_xact_lock_shared($1)" in statement
    assert "INSERT INTO fu_applied_events" in statement
